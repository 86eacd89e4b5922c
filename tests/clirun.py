"""Running the real entry point (:func:`pipeline.cli.main`) inside the test process.

Milliseconds per run instead of an interpreter start, for the CLI's error paths and other
runs that hash nothing. The ``isolated_cli`` fixture hides PIPELINE_* variables from outside
and puts the root logger back afterwards (the CLI points it at the stderr pytest captured).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from pipeline import cli
from pipeline.config import ENV_PREFIX


@pytest.fixture
def isolated_cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``pipeline ARGS`` (argparse's exits included)."""
    try:
        code = cli.main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.out, captured.err
