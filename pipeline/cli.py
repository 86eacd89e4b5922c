"""The ``pipeline`` command line: argument parsing, logging set-up and exit codes only.

Each sub-command lives in a module of :mod:`pipeline.commands` that exposes
``register(subparsers)``; the parser it adds carries a ``handler(args, settings) -> int``
default. No business logic here. Exit codes: 0 success, 1 "something matched / failed checks"
(documented per command), 2 usage or configuration error, 130 interrupted.

A user's mistake (a bad option value, an invalid setting, a list or file that cannot be read)
is one line on stderr and exit 2, never a traceback; ``PIPELINE_*`` variables that name no
setting are warned about once, since settings ignore them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from pipeline import __version__
from pipeline.config import LogLevel, load_settings, unknown_setting_variables
from pipeline.errors import ConfigError, PipelineError
from pipeline.logs import configure_logging

#: Modules that contribute sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "pipeline.commands.offline",
    "pipeline.commands.stream",
    "pipeline.commands.bench",
)

log = logging.getLogger("pipeline.cli")


class OneLineErrorParser(argparse.ArgumentParser):
    """Reports a usage error as one line naming the command, exit 2 (argparse would print the
    whole usage first). Sub-command parsers are made of the same class by argparse."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every sub-command registered."""
    parser = OneLineErrorParser(
        prog="pipeline",
        description=(
            "Screen uploads against hash lists of known abuse imagery (exact and perceptual "
            "hashes). Settings come from PIPELINE_* environment variables; see README.md."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=[level.value for level in LogLevel],
        default=None,
        metavar="LEVEL",
        help="override PIPELINE_LOG_LEVEL: DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides = {"log_level": args.log_level} if args.log_level else {}
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json_lines=settings.log_json)
    for warning in unknown_setting_variables():
        log.warning(warning)
    try:
        return int(args.handler(args, settings))
    except KeyboardInterrupt:
        return 130
    except PipelineError as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise  # not about a path (a socket, say): a fault to report in full
        # A path the user named is missing, a directory, or unreadable (`pipeline submit
        # missing.jpg`): theirs to fix, so one line. The traceback stays available at DEBUG.
        log.debug("command failed on a file", exc_info=True)
        print(f"pipeline: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
