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
    """Run the screening worker."""
    from pipeline.worker import run_worker

    del args
    return run_worker(settings)


def register(subparsers: Any) -> None:
    """Add ``worker``, ``submit``, ``demo``, ``demo-traffic`` and ``quarantine``."""
    worker = subparsers.add_parser(
        "worker",
        help="run the screening worker (embedded broker when PIPELINE_BOOTSTRAP_SERVERS is unset)",
        description="Consume uploads, screen them, emit verdicts/blocks/alerts/dead letters. "
        "Settings: PIPELINE_* environment variables (see README).",
    )
    worker.set_defaults(handler=cmd_worker)
    uploads.register(subparsers)
    demo.register(subparsers)
    quarantine.register(subparsers)


def register_hashlist_actions(actions: Any) -> None:
    """Add ``publish`` and ``retract`` to the ``hashlist`` command."""
    hashlists.register_actions(actions)
