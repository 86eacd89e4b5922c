"""The offline commands, run through the real entry point on generated images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.guard import GuardLimits
from pipeline.core.hashing import hash_image
from tests.imagegen import encode, synthetic_image


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offline")
    known = synthetic_image(1)
    (root / "known.jpg").write_bytes(encode(known))
    (root / "known-small.jpg").write_bytes(encode(known.resize((400, 300)), quality=60))
    (root / "stranger.png").write_bytes(encode(synthetic_image(2), "PNG"))
    (root / "broken.jpg").write_bytes(encode(known)[:500])
    hashes = hash_image((root / "known.jpg").read_bytes(), GuardLimits()).hex()
    (root / "entries.csv").write_text(
        "list,entry_id,algorithm,hash,category,source,note\n"
        f"demo,p1,phash,{hashes['phash']},other,test,\n"
        f"demo,m1,md5,{hashes['md5']},other,test,\n"
        "demo,bad,phash,nothex,other,test,\n"
    )
    (root / "lists.json").write_text(
        json.dumps({"lists": [{"name": "demo", "action": "block", "version": "v3",
                               "files": ["entries.csv"]}]})
    )  # fmt: skip
    return root


def lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_hash_prints_json_lines_and_flags_refusals(workspace: Path) -> None:
    result = run("hash", str(workspace / "known.jpg"), str(workspace / "broken.jpg"))
    assert result.returncode == 1
    good, bad = lines(result.stdout)
    assert good["format"] == "JPEG"
    assert set(good["hashes"]) == {"md5", "sha1", "sha256", "phash", "dhash"}  # type: ignore[arg-type]
    assert bad["error"] == {"reason": "truncated", "message": "image data is truncated"}


def test_match_exit_codes_and_explained_verdicts(workspace: Path) -> None:
    lists = str(workspace / "lists.json")
    hit = run("match", str(workspace / "known-small.jpg"), "--lists", lists)
    assert hit.returncode == 1, hit.stderr
    (verdict,) = lines(hit.stdout)
    assert verdict["action"] == "block"
    (match,) = verdict["matches"]  # type: ignore[misc]
    assert match["list"] == "demo"
    assert match["list_version"] == "v3"
    assert match["entry_id"] == "p1"
    assert match["distance"] <= match["threshold"]
    assert "skipped 1 bad line" in hit.stderr

    clean = run("match", str(workspace / "stranger.png"), "--lists", lists)
    assert clean.returncode == 0
    assert lines(clean.stdout)[0]["action"] == "allow"

    broken = run("match", str(workspace / "broken.jpg"), "--lists", lists)
    assert broken.returncode == 3
    assert lines(broken.stdout)[0]["error"]["reason"] == "truncated"  # type: ignore[index]

    assert run("match", str(workspace / "known.jpg"), "--lists", "/nonexistent.csv").returncode == 2


def test_hashlist_validate_and_stats(workspace: Path) -> None:
    validate = run("hashlist", "validate", str(workspace / "lists.json"))
    assert validate.returncode == 1
    assert "entries.csv:4: bad_hash" in validate.stderr
    assert "2 valid entries in 1 list(s); 1 bad line(s)" in validate.stdout
    stats = run("hashlist", "stats", "--json", str(workspace / "lists.json"))
    assert stats.returncode == 0
    report = json.loads(stats.stdout)
    assert report["lists"]["demo"]["action"] == "block"
    assert {(c["algorithm"], c["entries"]) for c in report["counts"]} == {("md5", 1), ("phash", 1)}


def test_help_lists_every_command() -> None:
    result = run("--help")
    for command in ("hash", "match", "hashlist", "bench"):
        assert command in result.stdout
