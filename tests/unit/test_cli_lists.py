"""`pipeline match` never screens against a list it could not load, and takes both orders.

A list file that loads no entry would match nothing, so every upload would come back "allow"
as if it had been checked: that is a list error (exit 2, one line naming the file). Runs the
real entry point in this process (tests/clirun.py); only the two runs that hash go through a
subprocess, like a user's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.clirun import isolated_cli, run_cli  # noqa: F401 - isolated_cli is a fixture
from tests.imagegen import encode, synthetic_image
from tests.unit.test_cli_offline import lines, run

pytestmark = pytest.mark.usefixtures("isolated_cli")

HEADER = "list,entry_id,algorithm,hash,category,source,note\n"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(synthetic_image(6, 64, 48)))
    return path


def md5_row(list_name: str, photo: Path) -> str:
    return f"{list_name},m1,md5,{hashlib.md5(photo.read_bytes()).hexdigest()},other,test,\n"


ZERO_ENTRY_FILES = {
    "zero-bytes": lambda photo: "",
    "header-only": lambda photo: HEADER,
    "bad-header": lambda photo: "a,b,c\n1,2,3\n",
    "no-list-column": lambda photo: (
        "entry_id,algorithm,hash,category\n"
        f"m1,md5,{hashlib.md5(photo.read_bytes()).hexdigest()},other\n"
    ),
    "every-row-bad": lambda photo: HEADER + "l,1,md5,nothex,other,,\nl,2,ahash,00,other,,\n",
}


@pytest.mark.parametrize("content", ZERO_ENTRY_FILES.values(), ids=ZERO_ENTRY_FILES.keys())
def test_a_list_file_that_loads_no_entry_is_a_list_error_not_an_allow(
    content: object, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lists = tmp_path / "lists.csv"
    lists.write_text(content(photo))  # type: ignore[operator]
    code, stdout, stderr = run_cli(capsys, "match", str(photo), "--lists", str(lists), "-q")
    assert code == 2, stderr
    assert stdout == ""  # no verdict, least of all "allow"
    (line,) = stderr.splitlines()
    assert line.startswith(f"pipeline: {lists}: no entries"), line


def manifest(tmp_path: Path, *lists: dict[str, object]) -> Path:
    path = tmp_path / "lists.json"
    path.write_text(json.dumps({"lists": list(lists)}))
    return path


def test_rows_naming_another_list_than_their_manifest_are_refused_not_split_off(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "eokm.csv").write_text(HEADER + md5_row("ncmec", photo))
    lists = manifest(tmp_path, {"name": "eokm", "action": "block", "files": ["eokm.csv"]})
    code, stdout, stderr = run_cli(capsys, "match", str(photo), "--lists", str(lists), "-q")
    assert code == 2, stderr
    assert stdout == ""
    (line,) = stderr.splitlines()
    assert f"{lists}: {tmp_path / 'eokm.csv'}: no entries loaded" in line
    assert "line 2: list_mismatch: row names list 'ncmec'" in line

    # Beside rows of its own list, such a row is a reported bad line; the file's list loads.
    (tmp_path / "eokm.csv").write_text(HEADER + md5_row("eokm", photo) + md5_row("ncmec", photo))
    code, _, stderr = run_cli(capsys, "hashlist", "validate", str(lists))
    assert code == 1
    assert f"{tmp_path / 'eokm.csv'}:3: list_mismatch" in stderr


def test_a_manifest_list_without_entry_files_cannot_screen(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lists = manifest(tmp_path, {"name": "eokm", "action": "block", "files": []})
    code, stdout, stderr = run_cli(capsys, "match", str(photo), "--lists", str(lists), "-q")
    assert (code, stdout) == (2, "")
    assert (
        stderr == "pipeline: list(s) 'eokm' have no entries: their manifest names no entry files\n"
    )


def test_invalid_manifest_json_is_named_by_file_and_line(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lists = tmp_path / "lists.json"
    lists.write_text('{"lists": [\n  {"name": "eokm",\n   "action": "block" "files": []}\n]}\n')
    code, _, stderr = run_cli(capsys, "match", str(photo), "--lists", str(lists))
    assert code == 2
    assert stderr == (f"pipeline: {lists}:3: invalid JSON: Expecting ',' delimiter (column 22)\n")


def test_validate_names_files_with_no_entries_beside_every_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER + "l,1,md5,nothex,other,,\n")
    code, stdout, stderr = run_cli(capsys, "hashlist", "validate", str(empty))
    assert code == 1
    assert stderr.splitlines() == [
        f"{empty}:2: bad_hash: md5 hash must be 32 hex digits, got 6 characters",
        f"{empty}: empty_list: no entries loaded",
    ]
    assert stdout == "0 valid entries in 0 list(s); 1 bad line(s); 1 file(s) with no entries\n"


def test_match_takes_the_lists_before_or_after_the_files(photo: Path, tmp_path: Path) -> None:
    (tmp_path / "eokm.csv").write_text(HEADER + md5_row("eokm", photo))
    lists = manifest(tmp_path, {"name": "eokm", "action": "block", "files": ["eokm.csv"]})
    other = tmp_path / "other.csv"
    other.write_text(HEADER + md5_row("other", photo))
    files_first = run("match", str(photo), "--lists", str(lists), str(other), "-q")
    lists_first = run("match", "-q", "--lists", str(lists), str(other), str(photo))
    for result in (files_first, lists_first):
        assert result.returncode == 1, result.stderr
        (verdict,) = lines(result.stdout)
        assert verdict["upload_id"] == str(photo)
        assert verdict["action"] == "block"
        assert {m["list"] for m in verdict["matches"]} == {"eokm", "other"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--lists", "{lists}"], "the following arguments are required: FILE"),
        (["--lists", "{tmp}/hashes.txt", "{photo}"], "--lists names no hash-list file"),
    ],
    ids=["no-file", "no-list-before-the-files"],
)
def test_match_without_files_or_lists_is_one_usage_line(
    args: list[str], says: str, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "eokm.csv").write_text(HEADER + md5_row("eokm", photo))
    paths = {"lists": str(tmp_path / "eokm.csv"), "tmp": str(tmp_path), "photo": str(photo)}
    code, _, stderr = run_cli(capsys, "match", *(arg.format(**paths) for arg in args))
    assert code == 2
    (line,) = stderr.splitlines()
    assert line.startswith(f"pipeline match: error: {says}"), line


def test_a_published_config_names_the_action_of_a_deny_list_only() -> None:
    # An allow list suppresses matches: "allow, action review" read as if it flagged uploads.
    from pipeline.commands.hashlists import describe_config
    from pipeline.core.hashlist import ListConfig

    deny = describe_config(ListConfig.create("eokm", kind="deny", action="block", version="v7"))
    allow = describe_config(ListConfig.create("fps", kind="allow", version="3"))
    assert deny.startswith("deny, action block, version v7, thresholds ")
    assert allow.startswith("allow, version 3, thresholds ")
