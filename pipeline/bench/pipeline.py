"""``pipeline bench pipeline``: CPU per upload of the whole worker against bare hashing, per
upload form and worker count, through a real broker; throughput, latency, time to ready.

Owns the end-to-end benchmark, all in one run on this machine:

1. **Bare hashing** (the baseline): :func:`pipeline.hashprocess.hash_job` over the same JPEGs
   in one process, no Kafka, no JSON, every hash (the worker computes every hash here too);
   its CPU seconds per upload are the process's own user + system time, so whatever else runs
   on the machine does not count.
2. **Per form and worker count**: for each upload form (inline JSON, the binary inline form,
   ``url`` from a loopback HTTP origin, ``s3`` from moto's S3 server) and each worker count
   (``pipeline worker --workers N``, each worker with ``--hash-processes`` hashing processes),
   fresh topics on an embedded tansu broker and a small deny list holding every algorithm:
   ``--events`` uploads are produced as fast as possible to the ready worker(s).

   - *CPU per upload*: the user + system time of the whole worker process tree (the parent,
     its workers, their fork servers and hashing processes) over the run, read from
     ``/proc/<pid>/stat`` (processes that ended are counted through their parent's
     ``cutime``/``cstime``), divided by the uploads. *Efficiency* = bare hashing's CPU per
     upload / the tree's: 1.0 would be a worker that costs nothing beyond hashing. The
     broker's, the content origin's and this load generator's CPU per upload are reported
     beside it, since they share the cores: none of them is in the tree's figure.
   - *Throughput*: (verdicts - 1) / (last ``decided_at`` - first), so start-up and the
     benchmark's own polling are not counted; it depends on what else the machine runs.
   - *Latency at half of peak*: the same worker(s) fed at half that rate; upload to verdict
     as this process sees it (p50, p99), so Kafka in both directions and batching count.
3. **Time to ready**: a 1M-entry list is published, a fresh worker is started, and the time
   from process start to ``/readyz`` answering 200 is measured.

Nothing is pinned: CPU time per upload does not depend on which core ran it. The machine's
load average is recorded per row, since a loaded machine slows wall-clock figures (throughput,
latency), and caches shared with other processes make CPU figures somewhat worse too.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.application.progress import Advance, no_progress
from pipeline.config import EMBEDDED_FETCH_MAX_WAIT_MS, Settings
from pipeline.core.types import Algorithm, HashValue

#: The upload forms the benchmark can produce.
FORMS = ("json", "binary", "url", "s3")
#: The bucket the s3 form's objects are put in (on the benchmark's own moto server).
S3_BUCKET = "bench-uploads"
#: The key of the benchmark's own loopback moto server (moto accepts any without IAM on).
S3_SECRET = "bench-not-a-secret"  # noqa: S105
#: Records of one kind: a value and Kafka headers (None for a JSON event).
UploadRecord = tuple[bytes, list[tuple[str, bytes]] | None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pipeline bench pipeline``."""
    parser.add_argument(
        "--forms",
        default=",".join(FORMS),
        help=f"upload forms to measure, of {', '.join(FORMS)} (default %(default)s)",
    )
    parser.add_argument(
        "--workers", default="1,2", help="worker counts to measure (default %(default)s)"
    )
    parser.add_argument(
        "--hash-processes",
        type=int,
        default=1,
        help="hashing processes per worker (default %(default)s)",
    )
    parser.add_argument(
        "--events", type=int, default=600, help="uploads per throughput run (%(default)s)"
    )
    parser.add_argument(
        "--size",
        default="1280x720",
        help="upload size WIDTHxHEIGHT, JPEG of bundled photos (default %(default)s)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=10.0,
        help="how long to feed the worker at half of peak; 0 skips (default %(default)s)",
    )
    parser.add_argument(
        "--list-entries",
        type=int,
        default=1_000_000,
        help="entries for the time-to-ready run; 0 skips it (default %(default)s)",
    )


# --- CPU time from /proc ------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, CPU ticks of the process itself, of its reaped children) from /proc, or
    None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # from field 3 (state) on: comm may hold ")"
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return int(fields[1]), utime + stime, cutime + cstime


def _is_worker_loop(pid: int) -> bool:
    """Whether ``pid`` runs ``pipeline worker`` itself (its event loop and threads), not a
    hashing process, the fork server or multiprocessing's resource tracker."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"pipeline" in argv and b"worker" in argv


def tree_cpu(root: int) -> tuple[float, float]:
    """CPU seconds (user + system) of ``root`` and every live descendant, plus the children
    they reaped (a process that ended is counted through its parent's cutime/cstime): (the
    whole tree, the part spent in ``pipeline worker`` processes themselves). (0, 0) if gone."""
    stats: dict[int, tuple[int, int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    ticks, loop_ticks, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        if pid in stats:
            _, own, reaped = stats[pid]
            ticks += own + reaped
            if _is_worker_loop(pid):
                loop_ticks += own
            stack.extend(children.get(pid, []))
    return ticks / _CLOCK_TICKS, loop_ticks / _CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root``'s whole process tree (:func:`tree_cpu`)."""
    return tree_cpu(root)[0]


@dataclass
class CpuMeters:
    """CPU seconds so far of the worker tree, the broker, the content origin and this process."""

    worker: float
    worker_loops: float
    broker: float
    origin: float
    load_generator: float

    @classmethod
    def read(cls, worker: int, broker: int | None, origin: int | None) -> CpuMeters:
        tree, loops = tree_cpu(worker)
        return cls(
            worker=tree,
            worker_loops=loops,
            broker=tree_cpu_seconds(broker) if broker else 0.0,
            origin=tree_cpu_seconds(origin) if origin else 0.0,
            load_generator=time.process_time(),  # every thread of this process, no children
        )

    def since(self, start: CpuMeters) -> CpuMeters:
        return CpuMeters(
            worker=self.worker - start.worker,
            worker_loops=self.worker_loops - start.worker_loops,
            broker=self.broker - start.broker,
            origin=self.origin - start.origin,
            load_generator=self.load_generator - start.load_generator,
        )


# --- bare hashing -----------------------------------------------------------------------------


def _hash_cpu_seconds(uploads: list[bytes], rounds: int) -> tuple[float, int]:
    """In a fresh process: CPU seconds of hash_job over ``uploads`` ``rounds`` times (after one
    warm-up round), and how many uploads that was."""
    from pipeline.core.guard import GuardLimits
    from pipeline.hashprocess import hash_job

    limits, algorithms = GuardLimits(), tuple(Algorithm)
    for data in uploads:
        hash_job(data, limits, algorithms)
    started = time.process_time()
    for _ in range(rounds):
        for data in uploads:
            hash_job(data, limits, algorithms)
    return time.process_time() - started, rounds * len(uploads)


def bare_hashing_cpu_per_upload(uploads: list[bytes], minimum: int = 200) -> float:
    """CPU seconds per upload of bare hashing, measured in a process of its own."""
    from concurrent.futures import ProcessPoolExecutor

    rounds = max(1, -(-minimum // len(uploads)))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        seconds, count = pool.submit(_hash_cpu_seconds, uploads, rounds).result()
    return seconds / count


@contextmanager
def _bar(label: str, total: int, unit: str) -> Iterator[Advance]:
    """A progress bar on stderr."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit=unit, file=sys.stderr) as bar:
        yield bar.update


# --- upload records and content origins -------------------------------------------------------


def _event(upload_id: str, content: dict[str, Any]) -> bytes:
    return json.dumps(
        {"upload_id": upload_id, "content": content, "received_at": datetime.now(UTC).isoformat()}
    ).encode()


def _binary(upload_id: str, data: bytes) -> UploadRecord:
    from pipeline.models import BINARY_UPLOAD_CONTENT_TYPE, BINARY_UPLOAD_SCHEMA_VERSION

    headers = [
        ("content-type", BINARY_UPLOAD_CONTENT_TYPE.encode()),
        ("upload-schema-version", BINARY_UPLOAD_SCHEMA_VERSION.encode()),
        ("upload-id", upload_id.encode()),
        ("received-at", datetime.now(UTC).isoformat().encode()),
    ]
    return data, headers


class Uploads:
    """The records of one upload form for the benchmark's pictures."""

    def __init__(self, form: str, pictures: list[bytes], origin: str = "") -> None:
        if form not in FORMS:
            raise ValueError(f"unknown upload form {form!r}; expected one of {FORMS}")
        self.form, self.pictures, self.origin = form, pictures, origin

    def record(self, upload_id: str, index: int) -> UploadRecord:
        picture = index % len(self.pictures)
        if self.form == "binary":
            return _binary(upload_id, self.pictures[picture])
        if self.form == "url":
            return _event(upload_id, {"kind": "url", "url": f"{self.origin}/{picture}.jpg"}), None
        if self.form == "s3":
            content = {"kind": "s3", "bucket": S3_BUCKET, "key": f"{picture}.jpg"}
            return _event(upload_id, content), None
        data = base64.b64encode(self.pictures[picture]).decode()
        return _event(upload_id, {"kind": "inline", "data_base64": data}), None


def _serve_pictures(pictures: list[bytes], port: int) -> None:  # pragma: no cover - a process
    """An HTTP origin on loopback: GET /<i>.jpg answers picture i (from memory)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            try:
                body = pictures[int(self.path.strip("/").removesuffix(".jpg"))]
            except (ValueError, IndexError):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


@contextmanager
def http_origin(pictures: list[bytes]) -> Iterator[tuple[str, int]]:
    """A loopback HTTP server of ``pictures`` in a process of its own: (base URL, its pid)."""
    from pipeline.adapters.broker import free_port

    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_pictures, args=(pictures, port), daemon=True
    )
    process.start()
    try:
        _wait_for_port(port)
        assert process.pid is not None
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.join(10)


@contextmanager
def s3_origin(pictures: list[bytes], log_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    """moto's S3 server on loopback holding ``pictures`` as ``<i>.jpg`` in :data:`S3_BUCKET`:
    (the worker's PIPELINE_S3_* settings for it, its pid). Needs moto (a dev dependency)."""
    import boto3  # type: ignore[import-untyped]  # moto's dependency; a dev tool here

    from pipeline.adapters.broker import free_port

    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key=S3_SECRET,
        )  # fmt: skip
        client.create_bucket(Bucket=S3_BUCKET)
        for i, picture in enumerate(pictures):
            client.put_object(Bucket=S3_BUCKET, Key=f"{i}.jpg", Body=picture)
        yield (
            {
                "PIPELINE_S3_ENDPOINT_URL": url,
                "PIPELINE_S3_REGION": "us-east-1",
                "PIPELINE_S3_ACCESS_KEY_ID": "bench",
                "PIPELINE_S3_SECRET_ACCESS_KEY": S3_SECRET,
                "PIPELINE_S3_ADDRESSING_STYLE": "path",
                "PIPELINE_S3_BUCKETS": S3_BUCKET,
            },
            process.pid,
        )
    finally:
        process.terminate()
        process.wait(10)


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def _free_ports(count: int) -> int:
    """A port P with P .. P+count-1 free now (``--workers N`` uses PORT+i)."""
    import socket

    from pipeline.adapters.broker import free_port

    for _ in range(100):
        base = free_port()
        if base + count > 65536:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no run of free ports")


class _Run:
    """One isolated set of topics and one worker process on the shared broker."""

    def __init__(self, bootstrap: str, settings: Settings) -> None:
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
        self.web_port = 0
        self.workers = 1
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

    def start_worker(
        self,
        log_path: Path,
        *,
        workers: int = 1,
        hash_processes: int = 1,
        env: dict[str, str] | None = None,
    ) -> float:
        """Start ``pipeline worker`` (``--workers N`` for more than one); returns seconds from
        spawn until every worker's /readyz answered 200."""
        self.web_port = _free_ports(workers)
        self.workers = workers
        environment = {
            **os.environ,
            "PIPELINE_BOOTSTRAP_SERVERS": self.bootstrap,
            "PIPELINE_APP_ID": self.settings.app_id,
            "PIPELINE_WORKER_ID": f"bench-{uuid.uuid4().hex[:6]}",
            "PIPELINE_HASH_PROCESSES": str(hash_processes),
            "PIPELINE_WEB_PORT": str(self.web_port),
            "PIPELINE_SESSION_TIMEOUT_SECONDS": "6",
            "PIPELINE_BROKER_FETCH_MAX_WAIT_MS": str(EMBEDDED_FETCH_MAX_WAIT_MS),
            **{f"PIPELINE_TOPIC_{k.upper()}": v for k, v in self.names.items()},
            **(env or {}),
        }
        command = [sys.executable, "-m", "pipeline", "worker"]
        if workers > 1:
            command += ["--workers", str(workers)]
        started = time.perf_counter()
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=environment, stdout=log, stderr=subprocess.STDOUT
            )
        waiting = set(self.ports)
        while waiting:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; see {log_path}")
            for port in sorted(waiting):
                try:
                    url = f"http://127.0.0.1:{port}/readyz"
                    with urllib.request.urlopen(url, timeout=1) as response:
                        if response.status == 200:
                            waiting.discard(port)
                except OSError:
                    pass
            time.sleep(0.05)
        return time.perf_counter() - started

    @property
    def ports(self) -> list[int]:
        """Every worker's web port (``--workers N``: PORT .. PORT+N-1)."""
        return [self.web_port + i for i in range(self.workers)]

    def verdict_count(self) -> int:
        """Verdicts written so far, summed over the workers' /metrics."""
        total = 0.0
        for port in self.ports:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            total += sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("screening_verdicts_total{")
            )
        return int(total)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(90)
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


def _send(producer: Any, topic: str, upload_id: str, record: UploadRecord) -> None:
    value, headers = record
    producer.send(topic, key=upload_id.encode(), value=value, headers=headers)


def throughput(
    run: _Run,
    uploads: Uploads,
    events: int,
    progress: Callable[[int], None],
    pids: tuple[int | None, int | None],
) -> dict[str, float]:
    """Produce ``events`` uploads to the ready worker(s) and wait for every verdict: uploads/s
    and CPU seconds per upload of the worker tree, the broker, the origin and this process
    (``pids``: the broker's and the origin's)."""
    assert run.process is not None
    records = [uploads.record(f"t{i}", i) for i in range(events)]  # made before the meters
    load_before = os.getloadavg()[0]
    start = CpuMeters.read(run.process.pid, *pids)
    producer = _producer(run.bootstrap)
    for i, record in enumerate(records):
        _send(producer, run.names["uploads"], f"t{i}", record)
    producer.flush(timeout=300)
    producer.close()
    seen = 0
    while seen < events:
        time.sleep(0.5)
        now = run.verdict_count()
        progress(now - seen)
        seen = now
    used = CpuMeters.read(run.process.pid, *pids).since(start)
    verdicts = _read_verdicts(run.bootstrap, run.names["verdicts"], events)
    decided = sorted(datetime.fromisoformat(v["decided_at"]).timestamp() for v in verdicts)
    errors = sum(1 for v in verdicts if v.get("error"))
    return {
        "uploads_per_s": (len(decided) - 1) / (decided[-1] - decided[0]),
        "worker_cpu_s_per_upload": used.worker / events,
        "worker_loop_cpu_s_per_upload": used.worker_loops / events,
        "broker_cpu_s_per_upload": used.broker / events,
        "origin_cpu_s_per_upload": used.origin / events,
        "load_generator_cpu_s_per_upload": used.load_generator / events,
        "errors": errors,
        "load_average_1m": (load_before + os.getloadavg()[0]) / 2,
    }


def latency(run: _Run, uploads: Uploads, rate: float, seconds: float) -> dict[str, float]:
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
    records = [uploads.record(f"l{i}", rng.randrange(len(uploads.pictures))) for i in range(total)]
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        upload_id = f"l{i}"
        sent[upload_id] = time.perf_counter()
        _send(producer, run.names["uploads"], upload_id, records[i])
    producer.flush(timeout=60)
    producer.close()
    give_up_at[0] = time.perf_counter() + 60
    stop.set()
    reader.join()
    consumer.close()
    samples = np.array([arrived[k] - sent[k] for k in sent if k in arrived] or [float("nan")])
    return {
        "rate_per_s": rate,
        "sent": total,
        "answered": sum(1 for k in sent if k in arrived),
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
        return run.start_worker(log_path)
    finally:
        run.stop()


@contextmanager
def _origin(
    form: str, pictures: list[bytes], log_dir: Path
) -> Iterator[tuple[Uploads, dict[str, str], int | None]]:
    """What the worker fetches ``form`` uploads from: (the records, the worker's settings for
    it, the origin's pid, None for inline forms)."""
    if form == "url":
        with http_origin(pictures) as (url, pid):
            yield (
                Uploads(form, pictures, url),
                {"PIPELINE_FETCH_ALLOW_NETWORKS": "127.0.0.1/32"},
                pid,
            )
    elif form == "s3":
        with s3_origin(pictures, log_dir / "bench-s3.log") as (env, pid):
            yield Uploads(form, pictures), env, pid
    else:
        yield Uploads(form, pictures), {}, None


def measure(
    broker: Any,
    settings: Settings,
    uploads: Uploads,
    env: dict[str, str],
    origin_pid: int | None,
    workers: int,
    args: argparse.Namespace,
    log_dir: Path,
) -> dict[str, Any]:
    """One row: the form's uploads through ``workers`` fresh workers."""
    from tqdm import tqdm

    bench_run = _Run(broker.bootstrap_servers, settings)
    bench_run.publish_random_list("bench-every-algorithm", tuple(Algorithm), 500)
    try:
        bench_run.start_worker(
            log_dir / f"bench-worker-{uploads.form}-{workers}.log",
            workers=workers, hash_processes=args.hash_processes, env=env,
        )  # fmt: skip
        label = f"{uploads.form}, {workers} worker(s)"
        with tqdm(total=args.events, desc=label, unit="upload", file=sys.stderr) as bar:
            row: dict[str, Any] = throughput(
                bench_run, uploads, args.events, bar.update, (broker.pid, origin_pid)
            )
        if args.latency_seconds > 0:
            rate = row["uploads_per_s"] / 2
            row["latency_at_half_peak"] = latency(bench_run, uploads, rate, args.latency_seconds)
    finally:
        bench_run.stop()
    return row


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Measure and print the table; write JSON."""
    from pipeline.adapters.broker import EmbeddedBroker
    from pipeline.application.tables import format_table
    from pipeline.bench.hashing import make_uploads
    from pipeline.bench.report import write_json

    width, height = (int(v) for v in args.size.lower().split("x"))
    pictures = make_uploads(width, height, "JPEG")
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    worker_counts = [int(c) for c in args.workers.split(",") if c.strip()]
    log_dir = args.json.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    # Measured before and after the rows, and their mean used: on a shared machine the same
    # hashing costs more CPU while other processes compete for the caches.
    bare_before = bare_hashing_cpu_per_upload(pictures)
    results: dict[str, Any] = {
        "size": args.size, "events": args.events, "hash_processes": args.hash_processes,
        "rows": [],
    }  # fmt: skip
    rows: list[dict[str, Any]] = results["rows"]
    with EmbeddedBroker(log_path=log_dir / "bench-broker.log") as broker:
        for form in forms:
            with _origin(form, pictures, log_dir) as (uploads, env, origin_pid):
                for workers in worker_counts:
                    row = measure(broker, settings, uploads, env, origin_pid, workers, args,
                                  log_dir)  # fmt: skip
                    rows.append(row | {"form": form, "workers": workers})
        bare_after = bare_hashing_cpu_per_upload(pictures)
        bare = (bare_before + bare_after) / 2
        results["bare_hashing_cpu_s_per_upload"] = bare
        results["bare_hashing_cpu_s_per_upload_before_after"] = [bare_before, bare_after]
        table: list[list[Any]] = []
        for row in rows:
            row["efficiency"] = bare / row["worker_cpu_s_per_upload"]
            lat = row.get("latency_at_half_peak", {})
            table.append([
                row["form"], row["workers"], row["uploads_per_s"],
                row["worker_cpu_s_per_upload"] * 1e3, row["worker_loop_cpu_s_per_upload"] * 1e3,
                row["efficiency"], row["broker_cpu_s_per_upload"] * 1e3,
                row["origin_cpu_s_per_upload"] * 1e3,
                row["load_generator_cpu_s_per_upload"] * 1e3,
                lat.get("p50_s", float("nan")) * 1e3, lat.get("p99_s", float("nan")) * 1e3,
                row["load_average_1m"],
            ])  # fmt: skip
        print(
            f"bare hashing: {bare * 1e3:.2f} ms of CPU per upload ({args.size} JPEG, every "
            f"hash; {bare_before * 1e3:.2f} before the rows, {bare_after * 1e3:.2f} after)"
        )
        columns = [
            "form", "workers", "uploads/s", "worker ms CPU", "of it loop ms", "efficiency",
            "broker ms", "origin ms", "loadgen ms", "p50 ms", "p99 ms", "load 1m",
        ]  # fmt: skip
        print(format_table(columns, table))
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
        "\nCPU columns are milliseconds of user + system time per upload (from /proc): the "
        "worker's whole process tree and, of it, the `pipeline worker` processes themselves "
        "(event loop and threads; the rest is hashing), the broker, the content origin (url, "
        "s3) and this load generator; efficiency = bare hashing's CPU per upload / the worker "
        "tree's. p50/p99: upload to verdict at half of the measured rate."
    )
    written = write_json(args.json, "pipeline", results)
    print(f"wrote {written}")
    return 0
