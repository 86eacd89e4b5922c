"""The package stays ruff- and mypy --strict-clean, and the core stays free of I/O imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "pipeline" / "core"

#: Modules the pure core must never import: I/O, clocks, environment, network, Kafka, Faust.
FORBIDDEN_IN_CORE = {
    "os", "socket", "asyncio", "time", "datetime", "logging", "subprocess", "threading",
    "multiprocessing", "urllib", "http", "requests", "aiohttp", "faust", "mode", "kafka",
    "aiokafka", "prometheus_client", "pipeline.adapters", "pipeline.config", "pipeline.app",
    "pipeline.agents", "pipeline.web", "pipeline.metrics", "pipeline.cli", "pathlib", "shutil",
    "tempfile", "io.open",
}  # fmt: skip


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_io(path: Path) -> None:
    bad = {
        name
        for name in _imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_CORE)
    }
    assert not bad, f"{path.name} imports I/O modules: {sorted(bad)}"


def test_core_has_modules() -> None:
    # Guards the parametrised test above against silently checking nothing.
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
