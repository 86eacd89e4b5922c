"""The package stays ruff- and mypy --strict-clean, and its import contracts hold (layers point
down, the core does no I/O, benchmarks stay out of what users run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "pipeline" / "core"

#: The import-linter contracts in pyproject.toml, each of which must be reported as kept.
CONTRACTS = (
    "Layers point down",
    "The core does no I/O",
    "Benchmarks stay out of the runtime import graph",
)


def test_import_contracts_are_kept() -> None:
    """Layers point down, the core does no I/O, benchmarks stay out of what users run.

    import-linter reads the real import graph (``from pipeline import x`` and imports inside
    functions included), which a deny-list over import statements missed."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in result.stdout, result.stdout


def test_core_has_modules() -> None:
    # Guards the import contract on the core against silently checking nothing.
    assert len(list(CORE.rglob("*.py"))) >= 3


def test_ruff_lint_and_format_clean() -> None:
    targets = ["pipeline", "tests"]
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *targets], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.slow
def test_mypy_strict_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "pipeline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
