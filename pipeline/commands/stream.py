"""Kafka-facing commands: worker, submit, demo, and hashlist publish|retract.

Owns argument handling, producing and consuming with kafka-python, progress bars and summaries.
``worker`` hands over to :mod:`pipeline.worker`. ``demo`` starts an embedded broker and a
worker process, publishes a demo hash list made from generated images, submits uploads that
match and uploads that do not, prints their verdicts, and leaves the worker running.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import EMBEDDED_FETCH_MAX_WAIT_MS, EMBEDDED_SESSION_TIMEOUT_SECONDS, Settings
from pipeline.core.hashlist import HashListEntry, ListConfig
from pipeline.errors import ConfigError
from pipeline.models import (
    UploadEvent,
    config_record,
    entry_key,
    entry_record,
    list_key,
)

FLUSH_TIMEOUT_SECONDS = 60.0


def _bootstrap(settings: Settings, override: str | None) -> str:
    servers = override or settings.bootstrap_servers
    if not servers:
        raise ConfigError(
            "set PIPELINE_BOOTSTRAP_SERVERS (or --bootstrap-servers); the embedded broker lives "
            "inside `pipeline worker` and `pipeline demo`"
        )
    return servers


def _producer(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        max_request_size=64 * 1024 * 1024,
    )


def _flush(producer: Any) -> None:
    producer.flush(timeout=FLUSH_TIMEOUT_SECONDS)
    producer.close(timeout=10)


# -- hashlist publish / retract ------------------------------------------------------------------


def publish_lists(
    bootstrap: str,
    topic: str,
    configs: Iterable[ListConfig],
    entries: list[HashListEntry],
    progress: bool = True,
) -> int:
    """Write list configs, then entries, to the hash-list topic; returns records written."""
    from tqdm import tqdm

    producer = _producer(bootstrap)
    written = 0
    for config in configs:
        producer.send(
            topic,
            key=list_key(config.name).encode(),
            value=config_record(config).model_dump_json().encode(),
        )
        written += 1
    bar = tqdm(
        entries,
        desc="publishing",
        unit="entry",
        file=sys.stderr,
        disable=not progress or not sys.stderr.isatty(),
    )
    for entry in bar:
        producer.send(
            topic,
            key=entry_key(entry.list_name, entry.entry_id).encode(),
            value=entry_record(entry).model_dump_json().encode(),
        )
        written += 1
    _flush(producer)
    return written


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    """Load list files (reporting bad lines) and publish them."""
    from pipeline.adapters.listfiles import load_paths

    loaded = load_paths(args.paths, default_list=args.list)
    if args.list:
        thresholds = dict(t.split("=", 1) for t in args.threshold) if args.threshold else None
        loaded.configs[args.list] = ListConfig.create(
            args.list,
            kind=args.kind,
            action=args.action,
            version=args.version,
            thresholds={k: int(v) for k, v in thresholds.items()} if thresholds else None,
        )
    for name, errors in loaded.errors.items():
        for error in errors[:20]:
            print(f"{name}:{error.line}: {error.reason}: {error.message}", file=sys.stderr)
    written = publish_lists(
        _bootstrap(settings, args.bootstrap_servers),
        settings.topic_hashlists,
        loaded.configs.values(),
        loaded.entries,
        progress=not args.quiet,
    )
    print(
        f"published {written:,} records ({len(loaded.entries):,} entries, "
        f"{len(loaded.configs)} list config(s)); rejected {loaded.error_count:,} bad line(s)"
    )
    return 1 if loaded.error_count else 0


def cmd_retract(args: argparse.Namespace, settings: Settings) -> int:
    """Publish tombstones for entries (by id, or every entry of a file) or a whole list config."""
    from pipeline.adapters.listfiles import load_paths

    keys = [entry_key(args.list, entry_id) for entry_id in args.entry_ids]
    if args.file:
        keys += [
            entry_key(e.list_name, e.entry_id) for e in load_paths([args.file], args.list).entries
        ]
    if args.list_config:
        keys.append(list_key(args.list))
    producer = _producer(_bootstrap(settings, args.bootstrap_servers))
    for key in keys:
        producer.send(settings.topic_hashlists, key=key.encode(), value=None)
    _flush(producer)
    print(f"retracted {len(keys):,} key(s)")
    return 0


# -- submit ---------------------------------------------------------------------------------------


def upload_event(path: Path, upload_id: str | None = None) -> UploadEvent:
    """An inline upload event for a local file."""
    return UploadEvent(
        upload_id=upload_id or f"{path.stem}-{uuid.uuid4().hex[:12]}",
        content={"kind": "inline", "data_base64": base64.b64encode(path.read_bytes()).decode()},
        received_at=datetime.now(UTC),
        metadata={"file": path.name},
    )


def submit_events(
    bootstrap: str, settings: Settings, events: list[UploadEvent], wait: float
) -> list[dict[str, Any]]:
    """Produce events; with ``wait`` > 0, return their verdicts seen within ``wait`` seconds."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = None
    if wait > 0:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        partitions = [
            TopicPartition(settings.topic_verdicts, p)
            for p in sorted(consumer.partitions_for_topic(settings.topic_verdicts) or [])
        ]
        consumer.assign(partitions)
        # Starting a little early is harmless: verdicts are filtered by upload id below.
        consumer.seek_to_end(*partitions)
        for tp in partitions:
            consumer.position(tp)
    producer = _producer(bootstrap)
    for event in events:
        producer.send(
            settings.topic_uploads,
            key=event.upload_id.encode(),
            value=event.model_dump_json().encode(),
        )
    _flush(producer)
    if consumer is None:
        return []
    wanted = {e.upload_id for e in events}
    verdicts: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + wait
    while wanted - set(verdicts) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                verdict = json.loads(record.value)
                if verdict.get("upload_id") in wanted:
                    verdicts[verdict["upload_id"]] = verdict
    consumer.close()
    return [verdicts[e.upload_id] for e in events if e.upload_id in verdicts]


def _summary(verdict: dict[str, Any]) -> str:
    matches = ", ".join(
        f"{m['list']}/{m['entry_id']} {m['algorithm']} d={m['distance']}"
        for m in verdict.get("matches", [])
    )
    error = verdict.get("error") or {}
    detail = matches or (f"{error.get('stage')}: {error.get('reason')}" if error else "no match")
    name = verdict.get("metadata", {}).get("file", verdict["upload_id"])
    return f"{verdict['action']:>6}  {name}  ({detail})"


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    """Submit files as inline uploads; with --wait print their verdicts."""
    bootstrap = _bootstrap(settings, args.bootstrap_servers)
    events = [upload_event(path) for path in args.files]
    verdicts = submit_events(bootstrap, settings, events, args.wait)
    for event in events:
        print(f"submitted {event.upload_id}", file=sys.stderr)
    for verdict in verdicts:
        print(json.dumps(verdict) if args.json else _summary(verdict))
    if args.wait and len(verdicts) < len(events):
        print(
            f"{len(events) - len(verdicts)} verdict(s) not seen within {args.wait}s",
            file=sys.stderr,
        )
        return 1
    return 0


# -- worker and demo ------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the screening worker."""
    from pipeline.worker import run_worker

    del args
    return run_worker(settings)


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"the worker exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise ConfigError(f"the worker was not ready within {timeout:.0f}s ({url})")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Embedded broker + worker + demo list + a few uploads; leaves the worker running."""
    from pipeline.adapters.broker import EmbeddedBroker
    from pipeline.adapters.topics import ensure_topics, topic_specs
    from pipeline.demo.hashlist import DEMO_LIST, demo_entries, demo_uploads

    with EmbeddedBroker(settings.embedded_port) as broker:
        bootstrap = broker.bootstrap_servers
        ensure_topics(bootstrap, topic_specs(settings))
        env = {
            **os.environ,
            "PIPELINE_BOOTSTRAP_SERVERS": bootstrap,
            "PIPELINE_BROKER_FETCH_MAX_WAIT_MS": str(EMBEDDED_FETCH_MAX_WAIT_MS),
            # The worker sees bootstrap servers, so it cannot tell the broker is embedded.
            "PIPELINE_SESSION_TIMEOUT_SECONDS": str(EMBEDDED_SESSION_TIMEOUT_SECONDS),
        }
        worker = subprocess.Popen([sys.executable, "-m", "pipeline", "worker"], env=env)
        try:
            published = publish_lists(
                bootstrap, settings.topic_hashlists, [DEMO_LIST], demo_entries(), progress=False
            )
            print(f"published demo list {DEMO_LIST.name!r}: {published} records", file=sys.stderr)
            base = f"http://{settings.web_host}:{settings.web_port}"
            _wait_ready(base + "/readyz", worker, timeout=60)
            uploads = demo_uploads()
            events = [
                UploadEvent(
                    upload_id=f"demo-{name}",
                    received_at=datetime.now(UTC),
                    metadata={"file": name},
                    content={"kind": "inline", "data_base64": base64.b64encode(data).decode()},
                )
                for name, data in uploads
            ]
            verdicts = submit_events(bootstrap, settings, events, wait=60)
            print("\nverdicts:")
            for verdict in verdicts:
                print("  " + _summary(verdict))
            print(f"\nmetrics: {base}/metrics   readiness: {base}/readyz   broker: {bootstrap}")
            print(
                "worker keeps running (Ctrl-C stops); submit more with "
                f"PIPELINE_BOOTSTRAP_SERVERS={bootstrap} pipeline submit FILE --wait 10"
            )
            if args.exit_after_verdicts:
                return 0 if len(verdicts) == len(events) else 1
            return worker.wait()
        except KeyboardInterrupt:
            return 130
        finally:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(20)
                except subprocess.TimeoutExpired:
                    worker.kill()


def cmd_demo_traffic(args: argparse.Namespace, settings: Settings) -> int:
    """Publish the demo list, then produce demo uploads at a steady rate (compose's producer)."""
    from pipeline.demo.hashlist import DEMO_LIST, demo_entries, demo_uploads

    bootstrap = _bootstrap(settings, args.bootstrap_servers)
    published = publish_lists(
        bootstrap, settings.topic_hashlists, [DEMO_LIST], demo_entries(), progress=False
    )
    print(f"published demo list {DEMO_LIST.name!r}: {published} records", file=sys.stderr)
    uploads = demo_uploads()
    producer = _producer(bootstrap)
    sent = 0
    started = time.monotonic()
    try:
        while args.count == 0 or sent < args.count:
            name, data = uploads[sent % len(uploads)]
            event = UploadEvent(
                upload_id=f"traffic-{uuid.uuid4().hex[:16]}",
                received_at=datetime.now(UTC),
                metadata={"file": name},
                content={"kind": "inline", "data_base64": base64.b64encode(data).decode()},
            )
            producer.send(
                settings.topic_uploads,
                key=event.upload_id.encode(),
                value=event.model_dump_json().encode(),
            )
            sent += 1
            if sent % 100 == 0:
                print(f"sent {sent:,} uploads", file=sys.stderr)
            time.sleep(max(0.0, started + sent / args.rate - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        _flush(producer)
    print(f"sent {sent:,} uploads", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Add ``worker``, ``submit`` and ``demo`` (``hashlist publish|retract`` live with hashlist)."""
    worker = subparsers.add_parser(
        "worker",
        help="run the screening worker (embedded broker when PIPELINE_BOOTSTRAP_SERVERS is unset)",
        description="Consume uploads, screen them, emit verdicts/blocks/alerts/dead letters. "
        "Settings: PIPELINE_* environment variables (see README).",
    )
    worker.set_defaults(handler=cmd_worker)

    submit = subparsers.add_parser("submit", help="submit image files as upload events")
    submit.add_argument("files", nargs="+", type=Path, metavar="FILE")
    submit.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the verdicts and print them",
    )
    submit.add_argument("--json", action="store_true", help="print whole verdicts as JSON")
    submit.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    submit.set_defaults(handler=cmd_submit)

    demo = subparsers.add_parser(
        "demo",
        help="run everything on an embedded broker with a demo list and demo uploads",
        description="Starts an embedded broker and a worker, publishes a demo hash list built "
        "from generated images, submits matching and non-matching uploads, prints verdicts and "
        "keeps the worker running until Ctrl-C.",
    )
    demo.add_argument("--exit-after-verdicts", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(handler=cmd_demo)

    traffic = subparsers.add_parser(
        "demo-traffic",
        help="publish the demo list and produce demo uploads at a steady rate",
        description="For trying dashboards and alerts: needs PIPELINE_BOOTSTRAP_SERVERS.",
    )
    traffic.add_argument("--rate", type=float, default=5.0, help="uploads per second (5)")
    traffic.add_argument("--count", type=int, default=0, help="stop after N uploads (0: never)")
    traffic.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    traffic.set_defaults(handler=cmd_demo_traffic)


def register_hashlist_actions(actions: Any) -> None:
    """Add ``publish`` and ``retract`` to the ``hashlist`` command."""
    publish = actions.add_parser("publish", help="publish list files to the hashlists topic")
    publish.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    publish.add_argument(
        "--list", help="list name for entries without one; also publishes its config"
    )
    publish.add_argument("--kind", default="deny", choices=["deny", "allow"])
    publish.add_argument("--action", default="review", choices=["block", "review"])
    publish.add_argument("--version", default="1", help="list version carried in matches")
    publish.add_argument(
        "--threshold",
        action="append",
        metavar="ALG=BITS",
        help="e.g. phash=8 (repeatable; default phash=8, dhash=10)",
    )
    publish.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    publish.add_argument("-q", "--quiet", action="store_true")
    publish.set_defaults(handler=cmd_publish)

    retract = actions.add_parser(
        "retract", help="retract entries (or a list config) from the topic"
    )
    retract.add_argument("--list", required=True)
    retract.add_argument("entry_ids", nargs="*", metavar="ENTRY_ID")
    retract.add_argument("--file", type=Path, help="retract every entry listed in this file")
    retract.add_argument("--list-config", action="store_true", help="also remove the list's config")
    retract.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    retract.set_defaults(handler=cmd_retract)
