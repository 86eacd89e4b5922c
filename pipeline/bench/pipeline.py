"""``pipeline bench pipeline``: events/s through a real broker against bare hashing, per core count.

Owns the end-to-end benchmark, all in one run on this machine:

1. **Bare hashing** (the baseline): :func:`pipeline.hashprocess.hash_job` over the same JPEGs in
   a pool of N processes pinned to the same cores the worker will get; no Kafka, no JSON. It
   computes all five hashes, as the worker does here.
2. **Pipeline throughput**: N uploads (inline base64) are produced to an embedded tansu broker
   first; then a real ``pipeline worker`` process, pinned to N cores with N hashing processes,
   screens the backlog against a small deny list holding every algorithm (so the worker
   computes the exact digests too: it skips algorithms no list uses). Throughput is
   (verdicts - 1) / (last decided_at - first decided_at), so neither start-up nor the
   benchmark's own polling is counted.
3. **Latency at half of peak**: the same worker is then fed at half its measured rate; upload
   to verdict latency is the time from producing an event to this process reading its verdict
   (p50, p99), so it includes Kafka in both directions and batching.
4. **Time to ready**: a 1M-entry list is published, a fresh worker is started, and the time
   from process start to ``/readyz`` answering 200 is measured.

The broker and this process are not pinned and share the machine with the worker: on a 2-core
machine the 2-core row competes with them, which the table says.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.application.progress import Advance, no_progress
from pipeline.config import EMBEDDED_FETCH_MAX_WAIT_MS, Settings
from pipeline.core.types import Algorithm, HashValue


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pipeline bench pipeline``."""
    parser.add_argument(
        "--cores", default="1,2", help="core counts to measure (default %(default)s)"
    )
    parser.add_argument(
        "--events", type=int, default=1500, help="uploads per throughput run (%(default)s)"
    )
    parser.add_argument(
        "--size",
        default="1280x720",
        help="upload size WIDTHxHEIGHT, JPEG of bundled photos (default %(default)s)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=15.0,
        help="how long to feed the worker at half of peak (default %(default)s)",
    )
    parser.add_argument(
        "--list-entries",
        type=int,
        default=1_000_000,
        help="entries for the time-to-ready run; 0 skips it (default %(default)s)",
    )


def _pin(cpus: frozenset[int]) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def _cpus(count: int) -> frozenset[int]:
    """The last ``count`` CPUs this process may use (core 0 keeps the broker's scheduling)."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    if count > len(available):
        raise ValueError(f"asked for {count} cores, {len(available)} available")
    return frozenset(available[-count:])


def bare_hashing_rate(uploads: list[bytes], processes: int, seconds: float) -> float:
    """Images/s of hash_job over ``uploads`` in ``processes`` pinned processes."""
    from pipeline.core.guard import GuardLimits
    from pipeline.hashprocess import hash_job

    limits = GuardLimits()
    algorithms = tuple(Algorithm)
    with ProcessPoolExecutor(processes, initializer=partial(_pin, _cpus(processes))) as pool:
        list(pool.map(hash_job, uploads, [limits] * len(uploads), [algorithms] * len(uploads)))
        done = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            batch = uploads * processes * 2
            list(pool.map(hash_job, batch, [limits] * len(batch), [algorithms] * len(batch)))
            done += len(batch)
        return done / (time.perf_counter() - started)


@contextmanager
def _bar(label: str, total: int, unit: str) -> Iterator[Advance]:
    """A progress bar on stderr."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit=unit, file=sys.stderr) as bar:
        yield bar.update


def _event(upload_id: str, data: bytes) -> bytes:
    return json.dumps(
        {
            "upload_id": upload_id,
            "content": {"kind": "inline", "data_base64": base64.b64encode(data).decode()},
            "received_at": datetime.now(UTC).isoformat(),
        }
    ).encode()


class _Run:
    """One isolated set of topics and one worker process on the shared broker."""

    def __init__(self, bootstrap: str, settings: Settings) -> None:
        from pipeline.adapters.broker import free_port
        from pipeline.adapters.topics import ensure_topics, topic_specs

        suffix = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.names = {
            "uploads": f"bench-uploads-{suffix}",
            "verdicts": f"bench-verdicts-{suffix}",
            "blocks": f"bench-blocks-{suffix}",
            "alerts": f"bench-alerts-{suffix}",
            "dead_letters": f"bench-dead-letters-{suffix}",
            "hashlists": f"bench-hashlists-{suffix}",
        }
        self.settings = settings.model_copy(
            update={f"topic_{k}": v for k, v in self.names.items()}
            | {"bootstrap_servers": bootstrap, "app_id": f"bench-{suffix}"}
        )
        ensure_topics(bootstrap, topic_specs(self.settings))
        self.web_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def publish_random_list(
        self, name: str, algorithms: Sequence[Algorithm], entries: int, *, progress: bool = False
    ) -> None:
        """A deny list of ``entries`` random hashes cycling through ``algorithms`` (random
        64-bit and digest values: uploads will not match them)."""
        from pipeline.application.hashlists import publish_lists
        from pipeline.core.hashlist import Category, HashListEntry, ListConfig

        rng = random.Random(name)  # noqa: S311 - random list entries
        config = ListConfig.create(name, kind="deny", action="block")
        listed = [
            HashListEntry(
                list_name=config.name,
                entry_id=f"e{i}",
                hash=HashValue(algorithm, rng.getrandbits(algorithm.bits)),
                category=Category.OTHER,
            )
            for i, algorithm in zip(range(entries), itertools.cycle(algorithms), strict=False)
        ]
        publish_lists(
            self.bootstrap,
            self.settings,  # its hash-list topic is this run's
            [config],
            listed,
            _bar if progress and sys.stderr.isatty() else no_progress,
        )

    def start_worker(self, cores: int, log_path: Path) -> float:
        """Start a pinned worker; returns seconds from spawn until /readyz answered 200."""
        env = {
            **os.environ,
            "PIPELINE_BOOTSTRAP_SERVERS": self.bootstrap,
            "PIPELINE_APP_ID": self.settings.app_id,
            "PIPELINE_HASH_PROCESSES": str(cores),
            "PIPELINE_WEB_PORT": str(self.web_port),
            "PIPELINE_SESSION_TIMEOUT_SECONDS": "6",
            "PIPELINE_BROKER_FETCH_MAX_WAIT_MS": str(EMBEDDED_FETCH_MAX_WAIT_MS),
            **{f"PIPELINE_TOPIC_{k.upper()}": v for k, v in self.names.items()},
        }
        cpus = _cpus(cores)
        started = time.perf_counter()
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=partial(_pin, cpus),  # noqa: PLW1509 - affinity only, no locks taken
            )
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; see {log_path}")
            try:
                url = f"http://127.0.0.1:{self.web_port}/readyz"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.05)

    def verdict_count(self) -> int:
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return int(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("screening_verdicts_total{")
            )
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _producer(bootstrap: str, linger_ms: int = 20) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=linger_ms,
        max_request_size=64 * 1024 * 1024,
        batch_size=1024 * 1024,
    )


def _read_verdicts(bootstrap: str, topic: str, count: int) -> list[dict[str, Any]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    verdicts: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    while len(verdicts) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            verdicts += [json.loads(r.value) for r in records]
    consumer.close()
    return verdicts


def throughput(
    run: _Run, uploads: list[bytes], events: int, progress: Callable[[int], None]
) -> float:
    """Produce ``events`` uploads, let the (ready) worker screen them; verdicts per second."""
    producer = _producer(run.bootstrap)
    for i in range(events):
        producer.send(
            run.names["uploads"],
            key=f"t{i}".encode(),
            value=_event(f"t{i}", uploads[i % len(uploads)]),
        )
    producer.flush(timeout=300)
    producer.close()
    seen = 0
    while seen < events:
        time.sleep(0.5)
        now = run.verdict_count()
        progress(now - seen)
        seen = now
    verdicts = _read_verdicts(run.bootstrap, run.names["verdicts"], events)
    decided = sorted(datetime.fromisoformat(v["decided_at"]).timestamp() for v in verdicts)
    return (len(decided) - 1) / (decided[-1] - decided[0])


def latency(run: _Run, uploads: list[bytes], rate: float, seconds: float) -> dict[str, float]:
    """Feed ``rate`` uploads/s for ``seconds``; upload-to-verdict latency percentiles (s)."""
    import threading

    import numpy as np
    from kafka import KafkaConsumer, TopicPartition

    topic = run.names["verdicts"]
    consumer = KafkaConsumer(
        bootstrap_servers=run.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    stop = threading.Event()

    total = int(rate * seconds)
    give_up_at = [float("inf")]  # set once everything is sent

    def read() -> None:
        while not (
            stop.is_set() and (len(arrived) >= total or time.perf_counter() > give_up_at[0])
        ):
            for records in consumer.poll(timeout_ms=20).values():
                now = time.perf_counter()
                for record in records:
                    upload_id = json.loads(record.value)["upload_id"]
                    arrived.setdefault(upload_id, now)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    producer = _producer(run.bootstrap, linger_ms=0)
    rng = random.Random(7)  # noqa: S311 - picks test images
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        upload_id = f"l{i}"
        value = _event(upload_id, uploads[rng.randrange(len(uploads))])
        sent[upload_id] = time.perf_counter()
        producer.send(run.names["uploads"], key=upload_id.encode(), value=value)
    producer.flush(timeout=60)
    producer.close()
    give_up_at[0] = time.perf_counter() + 60
    stop.set()
    reader.join()
    consumer.close()
    samples = np.array([arrived[k] - sent[k] for k in sent if k in arrived])
    return {
        "rate_per_s": rate,
        "sent": total,
        "answered": len(samples),
        "p50_s": float(np.percentile(samples, 50)),
        "p99_s": float(np.percentile(samples, 99)),
    }


def time_to_ready(bootstrap: str, settings: Settings, entries: int, log_path: Path) -> float:
    """Publish ``entries`` random pHash/dHash entries, start a worker, seconds until ready."""

    run = _Run(bootstrap, settings)
    run.publish_random_list(
        "bench-time-to-ready", (Algorithm.PHASH, Algorithm.DHASH), entries, progress=True
    )
    try:
        return run.start_worker(cores=len(_cpus(1)), log_path=log_path)
    finally:
        run.stop()


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Measure and print the table; write JSON."""
    from tqdm import tqdm

    from pipeline.adapters.broker import EmbeddedBroker
    from pipeline.application.tables import format_table
    from pipeline.bench.hashing import make_uploads
    from pipeline.bench.report import write_json

    width, height = (int(v) for v in args.size.lower().split("x"))
    uploads = make_uploads(width, height, "JPEG")
    core_counts = [int(c) for c in args.cores.split(",") if c.strip()]
    log_dir = args.json.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"size": args.size, "events": args.events, "cores": {}}
    rows: list[list[Any]] = []
    with EmbeddedBroker(log_path=log_dir / "bench-broker.log") as broker:
        for cores in core_counts:
            bare = bare_hashing_rate(uploads, cores, seconds=5.0)
            bench_run = _Run(broker.bootstrap_servers, settings)
            bench_run.publish_random_list("bench-every-algorithm", tuple(Algorithm), 500)
            try:
                bench_run.start_worker(cores, log_dir / f"bench-worker-{cores}core.log")
                with tqdm(
                    total=args.events, desc=f"{cores} core(s)", unit="upload", file=sys.stderr
                ) as bar:
                    rate = throughput(bench_run, uploads, args.events, bar.update)
                lat = latency(bench_run, uploads, rate / 2, args.latency_seconds)
            finally:
                bench_run.stop()
            results["cores"][str(cores)] = {
                "bare_hashing_images_per_s": bare,
                "pipeline_events_per_s": rate,
                "pipeline_vs_bare": rate / bare,
                "latency_at_half_peak": lat,
            }
            rows.append([cores, bare, rate, rate / bare, lat["rate_per_s"], lat["p50_s"] * 1e3,
                         lat["p99_s"] * 1e3])  # fmt: skip
        print(
            format_table(
                [
                    "cores",
                    "bare hash/s",
                    "pipeline ev/s",
                    "x bare",
                    "lat. rate/s",
                    "p50 ms",
                    "p99 ms",
                ],
                rows,
            )
        )
        if args.list_entries:
            ready = time_to_ready(
                broker.bootstrap_servers,
                settings,
                args.list_entries,
                log_dir / "bench-worker-ready.log",
            )
            results["time_to_ready"] = {"entries": args.list_entries, "seconds": ready}
            print(f"\ntime to ready with {args.list_entries:,} list entries: {ready:.1f} s")
    print(
        "\nnote: the broker and this benchmark are not pinned; they share the machine with the "
        "worker, so the row using every core competes with them."
    )
    written = write_json(args.json, "pipeline", results)
    print(f"wrote {written}")
    return 0
