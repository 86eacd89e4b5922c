"""Running the real entry point (:func:`pipeline.cli.main`) inside the test process.

Milliseconds per run instead of an interpreter start, for the CLI's error paths and other
runs that hash nothing. The ``isolated_cli`` fixture hides PIPELINE_* variables from outside
and puts the root logger back afterwards (the CLI points it at the stderr pytest captured).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping

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


def run_cli_in_process(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``pipeline ARGS`` with ``env`` laid over this process's environment, as
    ``subprocess.run([python, "-m", "pipeline", *args], env=...)`` would run it, but by
    :func:`pipeline.cli.main` in this process: for commands that only talk to Kafka (publish,
    retract, quarantine), where an interpreter start (numba, scipy) cost more than the command.
    The environment, the root logger and stdout/stderr are put back afterwards."""
    saved = {name: os.environ.get(name) for name in env}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(["pipeline", *args], code, out.getvalue(), err.getvalue())
