"""The Kafka-facing commands: ``worker`` here; ``submit``, ``demo`` and ``demo-traffic``,
``quarantine lift|rearm|list`` and ``hashlist publish|retract``, from their own modules.

``worker`` hands over to :mod:`pipeline.worker`. The others live in
:mod:`pipeline.commands.uploads`, :mod:`pipeline.commands.demo` and
:mod:`pipeline.commands.hashlists`; this module registers them in the order ``--help`` lists
them, and hands ``hashlist publish|retract`` to the ``hashlist`` command. No logic here.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.commands import demo, hashlists, quarantine, uploads
from pipeline.config import Settings


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the screening worker, or with ``--workers N`` N of them as child processes."""
    if args.workers != 1:
        from pipeline.worker_group import run_worker_group

        return run_worker_group(settings, args.workers)
    from pipeline.worker import run_worker

    return run_worker(settings)


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return count


def register(subparsers: Any) -> None:
    """Add ``worker``, ``submit``, ``demo``, ``demo-traffic`` and ``quarantine``."""
    worker = subparsers.add_parser(
        "worker",
        help="run the screening worker (embedded broker when PIPELINE_BOOTSTRAP_SERVERS is unset)",
        description="Consume uploads, screen them, emit verdicts/blocks/alerts/dead letters. "
        "Settings: PIPELINE_* environment variables (see README).",
    )
    worker.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        metavar="N",
        help="run N worker processes, each its own consumer-group member with its own hashing "
        "pool and web port (PIPELINE_WEB_PORT + i); SIGTERM stops all, a dead one is restarted "
        "(default %(default)s: this process is the worker)",
    )
    worker.set_defaults(handler=cmd_worker)
    uploads.register(subparsers)
    demo.register(subparsers)
    quarantine.register(subparsers)


def register_hashlist_actions(actions: Any) -> None:
    """Add ``publish`` and ``retract`` to the ``hashlist`` command."""
    hashlists.register_actions(actions)
