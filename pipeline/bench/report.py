"""Shared output of the benchmarks: a JSON file of results with the environment they were
measured on (their tables on stdout are :func:`pipeline.application.tables.format_table`'s).

Owns presentation only; what is measured belongs to each benchmark module.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import __version__


def environment() -> dict[str, Any]:
    """What the figures were measured on, recorded next to them."""
    return {
        "pipeline_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(path: Path, name: str, results: Mapping[str, Any]) -> Path:
    """Write ``{"benchmark": name, "environment": ..., **results}`` to ``path``; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "environment": environment(), **results}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
