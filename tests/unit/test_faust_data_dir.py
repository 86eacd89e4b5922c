"""Faust's data directory is in the temp directory, never the working directory.

Faust's default (``<app id>-data``) is relative to the working directory: the image's is not
writable, so the worker could not start, and every test worker left a directory in the
repository. tests/integration/test_image_conditions.py checks the worker end to end.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from pipeline.config import Settings


def test_faust_data_dir_is_per_user_in_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # what $TMPDIR sets
    monkeypatch.chdir(tmp_path)
    data_dir = Settings(app_id="some-app").faust_data_dir
    assert data_dir.is_absolute()
    assert data_dir == tmp_path / "tmp" / f"upload-screening-faust-{os.getuid()}"
