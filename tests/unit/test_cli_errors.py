"""A user's mistake is one line on stderr and exit 2; a misspelt setting is warned about.

Runs the real entry point in this process (tests/clirun.py), with the environment set per test.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.commands.arguments import threshold
from pipeline.config import unknown_setting_variables
from pipeline.core.types import Algorithm
from tests import clirun
from tests.clirun import isolated_cli  # noqa: F401 - a fixture
from tests.imagegen import encode, synthetic_image

HEADER = "list,entry_id,algorithm,hash,category,source,note\n"


pytestmark = pytest.mark.usefixtures("isolated_cli")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and stderr of ``pipeline ARGS``."""
    code, _, stderr = clirun.run_cli(capsys, *args)
    return code, stderr


@pytest.fixture
def entries(tmp_path: Path) -> Path:
    path = tmp_path / "entries.csv"
    path.write_text(HEADER + "demo,m1,md5," + "0" * 32 + ",other,test,\n")
    return path


@pytest.mark.parametrize(
    ("args", "environment", "says"),
    [
        (["--log-level", "LOUD", "hashlist", "stats", "{entries}"], {}, "--log-level"),
        (["hashlist", "stats", "{entries}"], {"PIPELINE_LOG_LEVEL": "LOUD"}, "PIPELINE_LOG_LEVEL"),
        (["hash", "--timeout", "foo", "{photo}"], {}, "--timeout"),
        (["match", "{photo}", "--lists", "{tmp}/missing.csv"], {}, "missing.csv"),
        (["match", "{photo}", "--lists", "{tmp}"], {}, "Is a directory"),
        (["submit", "{tmp}/missing.jpg"], {"PIPELINE_BOOTSTRAP_SERVERS": "x:1"}, "missing.jpg"),
        (["submit", "{tmp}"], {"PIPELINE_BOOTSTRAP_SERVERS": "x:1"}, "Is a directory"),
    ],
    ids=[
        "log-level-option", "log-level-variable", "timeout-not-a-number", "list-missing",
        "list-is-a-directory", "submit-missing-file", "submit-a-directory",
    ],
)  # fmt: skip
def test_a_user_error_is_one_line_and_exit_2(
    args: list[str],
    environment: dict[str, str],
    says: str,
    tmp_path: Path,
    entries: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(synthetic_image(5, 64, 48)))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    paths = {"entries": str(entries), "photo": str(photo), "tmp": str(tmp_path)}
    code, stderr = run_cli(capsys, *(arg.format(**paths) for arg in args))
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert says in stderr


def test_log_levels_are_read_in_any_case(
    entries: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_LOG_LEVEL", "warning")
    assert run_cli(capsys, "hashlist", "stats", str(entries))[0] == 0
    assert run_cli(capsys, "--log-level", "debug", "hashlist", "stats", str(entries))[0] == 0
    assert logging.getLogger().level == logging.DEBUG


def test_a_misspelt_setting_is_warned_about_with_the_setting_it_resembles(
    entries: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_BOOTSTRAP_SERVER", "kafka:9092")  # PIPELINE_BOOTSTRAP_SERVERS
    monkeypatch.setenv("PIPELINE_LOG_JSON", "false")  # a setting: no warning
    code, stderr = run_cli(capsys, "hashlist", "stats", str(entries))
    assert code == 0
    (warning,) = [line for line in stderr.splitlines() if "WARNING" in line]
    assert warning.endswith(
        "PIPELINE_BOOTSTRAP_SERVER is not a setting and is ignored; "
        "did you mean PIPELINE_BOOTSTRAP_SERVERS?"
    )


def test_unknown_setting_variables_are_found_in_any_case_and_hinted_only_when_close() -> None:
    environ = {
        "PIPELINE_WEB_PORT": "1",  # settings, in either case
        "pipeline_log_level": "INFO",
        "pipeline_hash_proceses": "2",
        "PIPELINE_COLOUR": "blue",  # like nothing
        "KAFKA_BOOTSTRAP_SERVERS": "x",  # not ours
    }
    assert unknown_setting_variables(environ) == (
        "PIPELINE_COLOUR is not a setting and is ignored",
        "pipeline_hash_proceses is not a setting and is ignored; "
        "did you mean PIPELINE_HASH_PROCESSES?",
    )


def threshold_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineErrorParser(prog="pipeline hashlist publish")
    parser.add_argument("--threshold", type=threshold, action="append")
    return parser


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("foo", "expected ALG=BITS"),
        ("phash=abc", "whole number of bits"),
        ("ahash=8", "unknown algorithm"),
        ("md5=0", "always matches at distance 0"),
    ],
)
def test_a_bad_threshold_option_is_one_usage_line(
    text: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        threshold_parser().parse_args(["--threshold", text])
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("pipeline hashlist publish: error: argument --threshold: ")
    assert says in stderr


def test_threshold_options_parse_to_algorithm_and_bits() -> None:
    args = threshold_parser().parse_args(["--threshold", "phash=6", "--threshold", "DHASH=12"])
    assert dict(args.threshold) == {Algorithm.PHASH: 6, Algorithm.DHASH: 12}


@pytest.mark.parametrize(
    ("text", "says"),
    [("foo", "expected ALG=BITS, e.g. phash=8, got 'foo'"), ("phash=abc", "whole number of bits")],
)
def test_hashlist_publish_reports_a_bad_threshold_in_one_usage_line(
    text: str, says: str, entries: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused while the arguments are parsed: before any list file is read or broker asked.
    code, stdout, stderr = clirun.run_cli(
        capsys, "hashlist", "publish", str(entries), "--list", "demo", "--threshold", text
    )
    assert (code, stdout) == (2, "")
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("pipeline hashlist publish: error: argument --threshold: ")
    assert says in stderr
