"""Kafka-facing commands: worker, submit, demo, and hashlist publish|retract.

Owns argument handling, producing and consuming with kafka-python, progress bars and summaries.
Every record produced goes through :class:`~pipeline.adapters.delivery.Delivery`: it is
confirmed by the broker (or reported as failed, with counts by error and the keys of the first
few) within PIPELINE_PRODUCER_FLUSH_TIMEOUT_SECONDS. A command that could not deliver
everything says so and exits 1; it never reports records as published that the broker did not
take. A broker that cannot be reached within PIPELINE_BROKER_CONNECT_TIMEOUT_SECONDS is one
line and exit 2; the client library's own connection chatter is kept off the terminal (see
:func:`_quiet_kafka_client_logs`). Publishing entries never touches a list's config unless the
user gave one (a manifest or a config flag), and retracting names the keys the topic does not
hold. Verdict lines are flushed one by one, so ``pipeline demo | tee log`` shows them live.
``worker`` hands over to :mod:`pipeline.worker`. ``demo`` starts an embedded broker and a
worker process, publishes a demo hash list made from generated images, submits uploads that
match and uploads that do not, prints their verdicts, and leaves the worker running.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.adapters import hashlist_topic
from pipeline.adapters.delivery import REPORTED_KEYS, Delivery, DeliveryFailed
from pipeline.adapters.hashlist_topic import entry_key, list_key, parse_hashlist_record
from pipeline.adapters.topics import BrokerUnreachable, latest_values, short_lived_consumer
from pipeline.config import EMBEDDED_FETCH_MAX_WAIT_MS, EMBEDDED_SESSION_TIMEOUT_SECONDS, Settings
from pipeline.core.hashlist import HashListEntry, ListConfig
from pipeline.errors import ConfigError
from pipeline.models import UploadEvent

if TYPE_CHECKING:
    from pipeline.adapters.listfiles import LoadedLists

log = logging.getLogger(__name__)

#: The ``hashlist publish`` options that set a list's config. Without one of them (or a
#: manifest), publishing sends entries only and leaves the list's config as it is.
CONFIG_OPTIONS = ("kind", "action", "version", "threshold")


def _quiet_kafka_client_logs() -> None:
    """Keep kafka-python's own log lines off the terminal of a CLI command.

    The client logs every failed connection attempt as a warning or error: about 20 lines
    before it gives up on an unreachable broker. The commands report every outcome themselves
    (delivery reports, :class:`BrokerUnreachable`), so those lines say nothing more; with
    ``--log-level DEBUG`` they stay, for diagnosis.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


def _unreachable(exc: BrokerUnreachable) -> int:
    """Say that the broker cannot be reached, in one line; the exit code for it."""
    print(
        f"pipeline: {exc}; is it running, and is PIPELINE_BOOTSTRAP_SERVERS "
        "(or --bootstrap-servers) right?",
        file=sys.stderr,
    )
    return 2


def _print_flushed(line: str = "") -> None:
    """Print a line and flush it: on a pipe stdout is block-buffered, and a verdict that sits
    in the buffer until the demo exits is no use to ``pipeline demo | tee log``."""
    print(line, flush=True)


def _bootstrap(settings: Settings, override: str | None) -> str:
    servers = override or settings.bootstrap_servers
    if not servers:
        raise ConfigError(
            "set PIPELINE_BOOTSTRAP_SERVERS (or --bootstrap-servers); the embedded broker lives "
            "inside `pipeline worker` and `pipeline demo`"
        )
    return servers


def _delivery(bootstrap: str, settings: Settings) -> Delivery:
    return Delivery.from_settings(bootstrap, settings)


# -- hashlist publish / retract ------------------------------------------------------------------


def publish_lists(
    bootstrap: str,
    topic: str,
    configs: Iterable[ListConfig],
    entries: list[HashListEntry],
    *,
    settings: Settings,
    progress: bool = True,
) -> int:
    """Write list configs, then entries, to the hash-list topic; returns records delivered.

    Raises :class:`DeliveryFailed` unless the broker confirmed every record, and
    :class:`BrokerUnreachable` when it cannot be reached at all.
    """
    from tqdm import tqdm

    delivery = _delivery(bootstrap, settings)
    bar = tqdm(
        entries,
        desc="publishing",
        unit="entry",
        file=sys.stderr,
        disable=not progress or not sys.stderr.isatty(),
    )
    hashlist_topic.publish(delivery, topic, configs, bar)
    return delivery.finish_or_raise().delivered


def _is_manifest(path: Path) -> bool:
    """The rule :func:`pipeline.adapters.listfiles.load_paths` applies: ``.json`` is a manifest."""
    return path.suffix.lower() == ".json"


def _load_for_publish(
    paths: list[Path], default_list: str | None
) -> tuple[LoadedLists, dict[str, ListConfig]]:
    """Every entry and bad line of ``paths``, and the list configs their manifests declare.

    ``load_paths`` also gives each list named only by entry files a default config. Publishing
    that default would overwrite the list's real config on the topic (the audit saw a block,
    version v7, pHash-4 list turn review, version 1, pHash-8 after publishing a bare CSV), so
    each path is loaded on its own and only manifests' configs are kept.
    """
    from pipeline.adapters.listfiles import LoadedLists, load_paths

    loaded = LoadedLists()
    declared: dict[str, ListConfig] = {}
    for path in paths:
        one = load_paths([path], default_list=default_list)
        loaded.entries.extend(one.entries)
        for name, errors in one.errors.items():
            loaded.errors.setdefault(name, []).extend(errors)
        if _is_manifest(path):
            declared.update(one.configs)
    return loaded, declared


def _config_on_topic(bootstrap: str, settings: Settings, name: str) -> ListConfig | None:
    """The config of list ``name`` on the hash-list topic now, if it has one.

    Raises :class:`BrokerUnreachable`, or :class:`~pipeline.errors.InputRejected` when the
    record there cannot be read (then only a manifest can replace it)."""
    key = list_key(name).encode()
    value = latest_values(
        bootstrap,
        settings.topic_hashlists,
        [key],
        connect_timeout=settings.broker_connect_timeout_seconds,
    ).get(key)
    if value is None:
        return None
    _, _, config = parse_hashlist_record(key, value)
    return config if isinstance(config, ListConfig) else None


def _with_options(base: ListConfig, args: argparse.Namespace) -> ListConfig:
    """``base`` with the config options given on the command line put over it."""
    thresholds: dict[str, int] = {str(alg): bits for alg, bits in base.thresholds.items()}
    thresholds.update(dict(args.threshold or []))
    return ListConfig.create(
        base.name,
        kind=args.kind or base.kind,
        action=args.action or base.action,
        thresholds=thresholds,
        enabled=base.enabled,
        version=args.version if args.version is not None else base.version,
    )


def _describe(config: ListConfig) -> str:
    """A config in one phrase: kind, action, version, perceptual thresholds, enabled."""
    thresholds = " ".join(
        f"{alg}={bits}" for alg, bits in sorted(config.thresholds.items()) if alg.is_perceptual
    )
    return (
        f"{config.kind}, action {config.action}, version {config.version}, "
        f"thresholds {thresholds}{'' if config.enabled else ', disabled'}"
    )


def _threshold_option(text: str) -> tuple[str, int]:
    """``--threshold ALG=BITS`` as (algorithm, bits); the algorithm is checked with the config."""
    algorithm, equals, bits = text.partition("=")
    if not equals or not bits.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected ALG=BITS such as phash=8, got {text!r}")
    return algorithm.strip().lower(), int(bits)


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    """Load list files (reporting bad lines) and publish their entries, plus the list configs
    the user gave: a manifest's, or ``--list`` with config options over the config on the topic.
    Exit 1 on bad lines or records the broker did not take, 2 when it cannot be reached."""
    _quiet_kafka_client_logs()
    options = [f"--{name}" for name in CONFIG_OPTIONS if getattr(args, name) is not None]
    if options and not args.list:
        print(
            f"pipeline: {', '.join(options)} set a list's config: name the list with --list",
            file=sys.stderr,
        )
        return 2
    bootstrap = _bootstrap(settings, args.bootstrap_servers)
    loaded, declared = _load_for_publish(args.paths, args.list)
    for name, errors in loaded.errors.items():
        for error in errors[:20]:
            print(f"{name}:{error.line}: {error.reason}: {error.message}", file=sys.stderr)
    #: Each config to publish, with where it came from (said in the output).
    configs = {name: (config, "from the manifest") for name, config in declared.items()}
    try:
        if options:
            base = declared.get(args.list)
            origin = "the manifest's config"
            if base is None:
                base = _config_on_topic(bootstrap, settings, args.list)
                origin = "the config on the topic"
            if base is None:
                base = ListConfig.create(args.list)
                origin = "the defaults (the list had no config)"
            configs[args.list] = (_with_options(base, args), f"{', '.join(options)} over {origin}")
        written = publish_lists(
            bootstrap,
            settings.topic_hashlists,
            [config for config, _ in configs.values()],
            loaded.entries,
            progress=not args.quiet,
            settings=settings,
        )
    except BrokerUnreachable as exc:
        return _unreachable(exc)
    except DeliveryFailed as exc:
        print(f"pipeline: publishing failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"published {written:,} records ({len(loaded.entries):,} entries, "
        f"{len(configs)} list config(s)); rejected {loaded.error_count:,} bad line(s)"
    )
    for name, (config, origin) in configs.items():
        print(f"list {name!r}: config published: {_describe(config)} ({origin})")
    for name in sorted({e.list_name for e in loaded.entries} - set(configs)):
        print(
            f"list {name!r}: entries only; its config is left as it is (the defaults while it "
            f"has none; to set one: a manifest, or --list {name} with --action/--version/"
            "--threshold/--kind)"
        )
    return 1 if loaded.error_count else 0


def cmd_retract(args: argparse.Namespace, settings: Settings) -> int:
    """Publish tombstones for the given keys the topic holds: entries (by id, or every entry of
    a file) and the list's config. Names the keys it does not hold and sends nothing for them.
    Exit 2 for nothing to retract or an unreachable broker, 1 when a key was not on the topic or
    the broker did not take every tombstone."""
    from pipeline.adapters.listfiles import load_paths

    _quiet_kafka_client_logs()
    keys = [entry_key(args.list, entry_id) for entry_id in args.entry_ids]
    if args.file:
        keys += [
            entry_key(e.list_name, e.entry_id) for e in load_paths([args.file], args.list).entries
        ]
    if args.list_config:
        keys.append(list_key(args.list))
    keys = list(dict.fromkeys(keys))  # once each, in the order given
    if not keys:
        print(
            "pipeline: nothing to retract: give ENTRY_IDs, --file FILE or --list-config",
            file=sys.stderr,
        )
        return 2
    bootstrap = _bootstrap(settings, args.bootstrap_servers)
    topic = settings.topic_hashlists
    try:
        # A tombstone for a key the topic does not hold retracts nothing; saying "retracted"
        # for it would hide a typo in an id, or a list name, from the person retracting.
        on_topic = latest_values(
            bootstrap,
            topic,
            [key.encode() for key in keys],
            connect_timeout=settings.broker_connect_timeout_seconds,
        )
        held = [key for key in keys if on_topic.get(key.encode()) is not None]
        if held:
            delivery = _delivery(bootstrap, settings)
            hashlist_topic.retract(delivery, topic, held)
            delivery.finish_or_raise()
    except BrokerUnreachable as exc:
        return _unreachable(exc)
    except DeliveryFailed as exc:
        print(f"pipeline: retracting failed: {exc}", file=sys.stderr)
        return 1
    print(f"retracted {len(held):,} key(s)")
    not_held = [key for key in keys if on_topic.get(key.encode()) is None]
    if not_held:
        more = (
            f" and {len(not_held) - REPORTED_KEYS:,} more" if len(not_held) > REPORTED_KEYS else ""
        )
        print(
            f"pipeline: {len(not_held):,} key(s) not on topic {topic!r} (never published, or "
            f"already retracted), nothing sent for them: "
            f"{', '.join(not_held[:REPORTED_KEYS])}{more}",
            file=sys.stderr,
        )
        return 1
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
    """Produce events; with ``wait`` > 0, return their verdicts seen within ``wait`` seconds.

    Raises :class:`DeliveryFailed` (naming the first upload ids) unless the broker confirmed
    every event, and :class:`BrokerUnreachable` when it cannot be reached.
    """
    from kafka import TopicPartition

    consumer = None
    if wait > 0:
        consumer = short_lived_consumer(bootstrap, settings.broker_connect_timeout_seconds)
        partitions = [
            TopicPartition(settings.topic_verdicts, p)
            for p in sorted(consumer.partitions_for_topic(settings.topic_verdicts) or [])
        ]
        consumer.assign(partitions)
        # Starting a little early is harmless: verdicts are filtered by upload id below.
        consumer.seek_to_end(*partitions)
        for tp in partitions:
            consumer.position(tp)
    try:
        delivery = _delivery(bootstrap, settings)
        for event in events:
            delivery.send(
                settings.topic_uploads, event.upload_id.encode(), event.model_dump_json().encode()
            )
        delivery.finish_or_raise()
    except BaseException:
        if consumer is not None:
            consumer.close()
        raise
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


#: What a verdict summary line holds; printed before the lines.
SUMMARY_LEGEND = (
    "verdicts, one a line: ACTION  UPLOAD  LIST (the list's action): "
    "ENTRY ALGORITHM DISTANCE/THRESHOLD (bits)"
)


def _upload_name(verdict: dict[str, Any]) -> str:
    return str(verdict.get("metadata", {}).get("file", verdict["upload_id"]))


def _match_phrase(match: dict[str, Any]) -> str:
    """``known-1-phash phash 2/8``: the distance out of the threshold, so a reader sees how
    close the match was; exact hashes match only when identical, which says it better."""
    if match["threshold"] == 0 and match["distance"] == 0:
        return f"{match['entry_id']} {match['algorithm']} identical"
    return f"{match['entry_id']} {match['algorithm']} {match['distance']}/{match['threshold']}"


def _summary(verdict: dict[str, Any], name_width: int = 0) -> str:
    """One line for a person: the action, the upload, and why (see :data:`SUMMARY_LEGEND`)."""
    by_list: dict[str, list[dict[str, Any]]] = {}
    for match in verdict.get("matches", []):
        by_list.setdefault(match["list"], []).append(match)
    detail = "; ".join(
        f"{name} ({matches[0]['list_action']}): {', '.join(_match_phrase(m) for m in matches)}"
        for name, matches in by_list.items()
    )
    if verdict.get("suppressed"):
        detail += f"{'; ' if detail else ''}{len(verdict['suppressed'])} suppressed by allow lists"
    if verdict.get("matches_omitted"):
        detail += f"; {verdict['matches_omitted']} more not listed"
    error = verdict.get("error") or {}
    if error:
        detail = f"{error.get('stage')}: {error.get('reason')}"
    return f"{verdict['action']:>6}  {_upload_name(verdict):<{name_width}}  {detail or 'no match'}"


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    """Submit files as inline uploads; with --wait print their verdicts (a summary line each,
    or with --json the whole verdicts). Exit 2 when the broker cannot be reached."""
    _quiet_kafka_client_logs()
    bootstrap = _bootstrap(settings, args.bootstrap_servers)
    events = [upload_event(path) for path in args.files]
    try:
        verdicts = submit_events(bootstrap, settings, events, args.wait)
    except BrokerUnreachable as exc:
        return _unreachable(exc)
    except DeliveryFailed as exc:
        print(f"pipeline: submitting failed: {exc}", file=sys.stderr)
        return 1
    for event in events:
        print(f"submitted {event.upload_id}", file=sys.stderr)
    if verdicts and not args.json:
        print(f"{SUMMARY_LEGEND}; the whole verdicts: add --json", file=sys.stderr)
    width = max((len(_upload_name(v)) for v in verdicts), default=0)
    for verdict in verdicts:
        _print_flushed(json.dumps(verdict) if args.json else _summary(verdict, width))
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


def _interrupt_on_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C, so ``finally`` blocks stop what the command started
    (Python's default for SIGTERM is to exit at once, leaking the worker and the broker)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def publish_demo_list(bootstrap: str, settings: Settings) -> None:
    """Publish the bundled demo hash list (generated images) and say so on stderr."""
    from pipeline.demo.hashlist import DEMO_LIST, demo_entries

    published = publish_lists(
        bootstrap,
        settings.topic_hashlists,
        [DEMO_LIST],
        demo_entries(),
        progress=False,
        settings=settings,
    )
    print(f"published demo list {DEMO_LIST.name!r}: {published} records", file=sys.stderr)


def _refuse_taken_port(host: str, port: int) -> None:
    """Raise :class:`ConfigError` when something already listens on ``host:port``.

    The demo judges its worker ready by ``/readyz`` on that port; with another demo or worker
    there, it would take that one's answer for its own worker's and then wait a minute for
    verdicts that never come. SO_REUSEADDR, as the worker's web server uses, so a port left
    in TIME_WAIT by a demo that just stopped is not mistaken for a taken one.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise ConfigError(
                f"{host}:{port} is in use (another pipeline demo or worker?): stop it, or set "
                "PIPELINE_WEB_PORT to a free port"
            ) from None


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Embedded broker + worker + demo list + a few uploads; leaves the worker running.
    SIGTERM stops the worker and the broker, like Ctrl-C. Raises :class:`ConfigError` (one
    line, exit 2) at once when the web port is taken."""
    from pipeline.adapters.broker import EmbeddedBroker
    from pipeline.adapters.topics import ensure_topics, topic_specs
    from pipeline.demo.hashlist import demo_uploads

    _interrupt_on_sigterm()
    _quiet_kafka_client_logs()
    if settings.web_port:
        _refuse_taken_port(settings.web_host, settings.web_port)
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
            publish_demo_list(bootstrap, settings)
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
            _print_flushed(f"\n{SUMMARY_LEGEND}")
            width = max((len(_upload_name(v)) for v in verdicts), default=0)
            for verdict in verdicts:
                _print_flushed("  " + _summary(verdict, width))
            _print_flushed(
                f"\nmetrics: {base}/metrics   readiness: {base}/readyz   broker: {bootstrap}"
            )
            _print_flushed(
                "worker keeps running (Ctrl-C stops); submit more (--json prints whole verdicts):\n"
                f"  PIPELINE_BOOTSTRAP_SERVERS={bootstrap} pipeline submit FILE --wait 10 --json"
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
    from pipeline.demo.hashlist import demo_uploads

    _quiet_kafka_client_logs()
    bootstrap = _bootstrap(settings, args.bootstrap_servers)
    try:
        publish_demo_list(bootstrap, settings)
        delivery = _delivery(bootstrap, settings)
    except BrokerUnreachable as exc:
        return _unreachable(exc)
    uploads = demo_uploads()
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
            delivery.send(
                settings.topic_uploads, event.upload_id.encode(), event.model_dump_json().encode()
            )
            sent += 1
            if sent % 100 == 0:
                print(f"sent {sent:,} uploads", file=sys.stderr)
            time.sleep(max(0.0, started + sent / args.rate - time.monotonic()))
    except KeyboardInterrupt:
        pass
    report = delivery.finish()
    print(f"sent {report.delivered:,} uploads", file=sys.stderr)
    if not report.ok:
        print(f"pipeline: {report.summary()}", file=sys.stderr)
        return 1
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
    publish = actions.add_parser(
        "publish",
        help="publish list files to the hashlists topic",
        description="Publishes the entries of entry files and manifests. A list's config is "
        "published only when given: by a manifest, or by --list with --kind/--action/--version/"
        "--threshold, each put over the config the topic holds for the list (a new list starts "
        "from deny, review, version 1, phash=8 dhash=10). Entries alone never change a config.",
    )
    publish.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    publish.add_argument(
        "--list",
        help="list name for entries without one; with the options below, the list whose "
        "config they set",
    )
    publish.add_argument("--kind", choices=["deny", "allow"], help="set the list's kind")
    publish.add_argument("--action", choices=["block", "review"], help="set the list's action")
    publish.add_argument("--version", help="set the list's version (carried in matches)")
    publish.add_argument(
        "--threshold",
        action="append",
        type=_threshold_option,
        metavar="ALG=BITS",
        help="set a threshold, e.g. phash=8 (repeatable); the list's others stay as they are",
    )
    publish.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    publish.add_argument("-q", "--quiet", action="store_true")
    publish.set_defaults(handler=cmd_publish)

    retract = actions.add_parser(
        "retract",
        help="retract entries (or a list config) from the topic",
        description="Publishes a tombstone for each given key the topic holds. Keys it does not "
        "hold (never published, or already retracted) are named, and get nothing: exit 1.",
    )
    retract.add_argument("--list", required=True)
    retract.add_argument("entry_ids", nargs="*", metavar="ENTRY_ID")
    retract.add_argument("--file", type=Path, help="retract every entry listed in this file")
    retract.add_argument("--list-config", action="store_true", help="also remove the list's config")
    retract.add_argument("--bootstrap-servers", help="override PIPELINE_BOOTSTRAP_SERVERS")
    retract.set_defaults(handler=cmd_retract)
