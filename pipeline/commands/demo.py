"""``demo`` and ``demo-traffic``: the pipeline end to end, for a first look and for dashboards.

``demo`` starts an embedded broker and a worker process, publishes a demo hash list made from
generated images, submits uploads that match and uploads that do not, prints their verdicts,
and leaves the worker running until Ctrl-C or SIGTERM (exit 130), which stop the worker and
the broker. A web port another demo or worker holds is one line and exit 2, at once.
``demo-traffic`` publishes the demo list to a running broker, then produces demo uploads at a
steady rate (docker-compose's producer). What runs is :mod:`pipeline.application.demo`'s; this
module owns the arguments, the output, the signals and the exit codes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import threading
from typing import Any

from pipeline.adapters.topics import BrokerUnreachable
from pipeline.application.demo import (
    VERDICT_WAIT_SECONDS,
    RunningDemo,
    demo_events,
    publish_demo_list,
    run_demo_traffic,
    running_demo,
)
from pipeline.application.uploads import submit_events
from pipeline.commands.connection import bootstrap_servers, quiet_kafka_client_logs, unreachable
from pipeline.commands.uploads import SUMMARY_LEGEND, print_flushed, verdict_lines
from pipeline.config import Settings


def pipeline_command(argv0: str, executable: str, found_on_path: str | None) -> str:
    """The command that runs this same ``pipeline`` from another shell in this directory:
    ``pipeline`` only when that name finds this one on the PATH (``found_on_path``), else the
    path it was started by (``.venv/bin/pipeline``: a new shell has no venv activated), or
    ``executable -m pipeline`` when started so."""
    if os.path.basename(argv0) == "__main__.py":
        return f"{shlex.quote(executable)} -m pipeline"
    if found_on_path is not None and os.path.realpath(found_on_path) == os.path.realpath(argv0):
        return "pipeline"
    return shlex.quote(argv0)


def _interrupt_on_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C, so ``finally`` blocks stop what the command started
    (Python's default for SIGTERM is to exit at once, leaking the worker and the broker)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _publish_demo_list(bootstrap: str, settings: Settings) -> None:
    from pipeline.demo.hashlist import DEMO_LIST

    records = publish_demo_list(bootstrap, settings)
    print(f"published demo list {DEMO_LIST.name!r}: {records} records", file=sys.stderr)


def _show(demo: RunningDemo, settings: Settings) -> bool:
    """Publish the demo list, submit the demo uploads once the worker is ready, and print
    their verdicts and where to look next; whether every verdict came."""
    _publish_demo_list(demo.bootstrap, settings)
    demo.wait_ready()
    events = demo_events()
    verdicts = submit_events(demo.bootstrap, settings, events, wait=VERDICT_WAIT_SECONDS)
    print_flushed(f"\n{SUMMARY_LEGEND}")
    for line in verdict_lines(verdicts):
        print_flushed("  " + line)
    print_flushed(
        f"\nmetrics: {demo.web_url}/metrics   readiness: {demo.web_url}/readyz   "
        f"broker: {demo.bootstrap}"
    )
    command = pipeline_command(sys.argv[0], sys.executable, shutil.which("pipeline"))
    print_flushed(
        "worker keeps running (Ctrl-C stops); submit more (--json prints whole verdicts):\n"
        f"  PIPELINE_BOOTSTRAP_SERVERS={demo.bootstrap} {command} submit FILE --wait 10 --json"
    )
    return len(verdicts) == len(events)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Embedded broker + worker + demo list + a few uploads; leaves the worker running.
    SIGTERM stops the worker and the broker, like Ctrl-C. Raises
    :class:`~pipeline.errors.ConfigError` (one line, exit 2) at once when the web port is
    taken."""
    _interrupt_on_sigterm()
    quiet_kafka_client_logs()
    with running_demo(settings) as demo:
        try:
            every_verdict = _show(demo, settings)
            if args.exit_after_verdicts:
                return 0 if every_verdict else 1
            return demo.wait()
        except KeyboardInterrupt:
            return 130


def cmd_demo_traffic(args: argparse.Namespace, settings: Settings) -> int:
    """Publish the demo list, then produce demo uploads at a steady rate (compose's producer).
    Exit 1 when the broker did not confirm every upload, 2 when it cannot be reached."""

    def every_hundred(sent: int) -> None:
        if sent % 100 == 0:
            print(f"sent {sent:,} uploads", file=sys.stderr)

    quiet_kafka_client_logs()
    bootstrap = bootstrap_servers(settings, args.bootstrap_servers)
    try:
        _publish_demo_list(bootstrap, settings)
        report = run_demo_traffic(
            bootstrap, settings, rate=args.rate, count=args.count, on_sent=every_hundred
        )
    except BrokerUnreachable as exc:
        return unreachable(exc)
    print(f"sent {report.delivered:,} uploads", file=sys.stderr)
    if not report.ok:
        print(f"pipeline: {report.summary()}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> None:
    """Add ``demo`` and ``demo-traffic``."""
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
