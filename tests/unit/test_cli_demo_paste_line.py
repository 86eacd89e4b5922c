"""The demo's paste line names the command that works in a new shell (where no venv is
activated): a new user ran `.venv/bin/pipeline demo` and got `pipeline: command not found`."""

from __future__ import annotations

from pathlib import Path

from pipeline.commands.demo import pipeline_command


def script(directory: Path) -> Path:
    path = directory / ".venv" / "bin" / "pipeline"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    return path


def test_started_by_a_path_not_on_the_path_it_is_that_path(tmp_path: Path) -> None:
    assert pipeline_command(".venv/bin/pipeline", "/usr/bin/python3", None) == ".venv/bin/pipeline"
    other = tmp_path / "elsewhere" / "pipeline"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    started = str(tmp_path / ".venv/bin/pipeline")
    assert pipeline_command(started, "/usr/bin/python3", str(other)) == started


def test_found_on_the_path_it_is_the_bare_name(tmp_path: Path) -> None:
    started = str(script(tmp_path))
    assert pipeline_command(started, "/usr/bin/python3", started) == "pipeline"


def test_started_as_a_module_it_is_the_interpreter(tmp_path: Path) -> None:
    main = "/src/pipeline/__main__.py"
    assert (
        pipeline_command(main, "/opt/venv/bin/python", None) == "/opt/venv/bin/python -m pipeline"
    )


def test_a_path_with_a_space_is_quoted() -> None:
    assert pipeline_command("my env/bin/pipeline", "python", None) == "'my env/bin/pipeline'"
