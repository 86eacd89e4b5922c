"""The offline commands, run through the real entry point on generated images."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.adapters.listfiles import load_paths
from pipeline.application.screen_files import hash_uploads
from pipeline.core.guard import GuardLimits
from pipeline.core.hashing import hash_image
from pipeline.core.hashlist import parse_entries
from pipeline.core.types import Algorithm
from pipeline.errors import PipelineError
from pipeline.hashpool import HashPool
from pipeline.hashprocess import HashJobResult, hash_job
from tests.clirun import isolated_cli, run_cli  # noqa: F401 - isolated_cli is a fixture
from tests.imagegen import encode, synthetic_image


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
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
    hashes = set(good["hashes"])  # type: ignore[arg-type]
    assert hashes == {"md5", "sha1", "sha256", "phash", "dhash", "pdq"}
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


def test_a_sha256_on_a_bare_list_matches_the_byte_identical_file(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(synthetic_image(4, 64, 48)))
    bare = tmp_path / "bare.csv"
    bare.write_text(
        "list,entry_id,algorithm,hash,category,source,note\n"
        f"known,s1,sha256,{hashlib.sha256(photo.read_bytes()).hexdigest()},other,test,\n"
    )
    result = run("match", str(photo), "--lists", str(bare), "-q")
    assert result.returncode == 1, result.stderr
    (verdict,) = lines(result.stdout)
    assert verdict["action"] == "review"  # a bare list's action
    (match,) = verdict["matches"]  # type: ignore[misc]
    assert (match["list"], match["algorithm"], match["distance"]) == ("known", "sha256", 0)


@pytest.mark.usefixtures("isolated_cli")
def test_hashlist_validate_and_stats(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # In this process (tests/clirun.py): these hash nothing, an interpreter start each is waste.
    code, out, err = run_cli(capsys, "hashlist", "validate", str(workspace / "lists.json"))
    assert code == 1
    assert "entries.csv:4: bad_hash" in err
    assert "2 valid entries in 1 list(s); 1 bad line(s)" in out
    code, out, _ = run_cli(capsys, "hashlist", "stats", "--json", str(workspace / "lists.json"))
    assert code == 0
    report = json.loads(out)
    assert report["lists"]["demo"]["action"] == "block"
    assert {(c["algorithm"], c["entries"]) for c in report["counts"]} == {("md5", 1), ("phash", 1)}


def subcommands(help_text: str) -> list[str]:
    """The names argparse lists under a sub-command group (``    name   help...`` lines)."""
    return re.findall(r"^ {4}(\S+)", help_text, re.MULTILINE)


@pytest.mark.usefixtures("isolated_cli")
def test_help_lists_every_command_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, top, _ = run_cli(capsys, "--help")
    assert code == 0
    assert subcommands(top) == [
        "hash", "match", "hashlist", "worker", "submit", "demo", "demo-traffic", "quarantine",
        "bench",
    ]  # fmt: skip
    assert subcommands(run_cli(capsys, "hashlist", "--help")[1]) == [
        "validate", "stats", "publish", "retract",
    ]  # fmt: skip
    assert subcommands(run_cli(capsys, "bench", "--help")[1]) == [
        "hashing", "index", "pipeline", "quality", "detail", "video", "lists",
    ]  # fmt: skip


def test_hash_enforces_a_time_limit_per_file(tmp_path: Path) -> None:
    # An uncompressed 3000x3000 noise PNG takes ~0.2 s to decode. The JPEGs running beside it
    # die with its killed process and are run again, alone: only the slow file is refused.
    rng = np.random.default_rng(0)
    slow = tmp_path / "slow.png"
    Image.fromarray(rng.integers(0, 255, (3000, 3000), dtype=np.uint8), "L").save(
        slow, compress_level=0
    )
    # Small JPEGs (~2 ms to hash): the 640x480 one took 30-60 ms on a loaded machine, too
    # close to the limit, and then timed out too.
    known = tmp_path / "small.jpg"
    known.write_bytes(encode(synthetic_image(1, 64, 48)))
    result = run("hash", "--timeout", "0.08", str(slow), *[str(known)] * 3)
    assert result.returncode == 1, result.stderr
    timed_out, *hashed = lines(result.stdout)
    assert timed_out["error"]["reason"] == "hash_timeout"  # type: ignore[index]
    assert [h["format"] for h in hashed] == ["JPEG"] * 3
    assert run("hash", "--timeout", "0", str(known)).returncode == 2


# Jobs for the pool below: top-level, so the hashing processes can import them.
def crash_on_poison(
    data: bytes, limits: GuardLimits, algorithms: tuple[Algorithm, ...]
) -> HashJobResult:
    if data == b"poison":
        os._exit(1)
    time.sleep(0.05)  # so innocent jobs are running when a poisoned one kills the pool
    return hash_job(data, limits, algorithms)


def allocate_on_poison(
    data: bytes, limits: GuardLimits, algorithms: tuple[Algorithm, ...]
) -> HashJobResult:
    if data == b"poison":
        np.ones(1 << 30, dtype=np.uint8)  # 1 GiB, over the cap below
    return hash_job(data, limits, algorithms)


@pytest.mark.parametrize("job", [crash_on_poison, allocate_on_poison])
def test_hashing_survives_crashes_and_the_memory_cap_in_order(job: object) -> None:
    jpeg = encode(synthetic_image(3, 64, 48))
    uploads: list[tuple[str, bytes | PipelineError]] = [
        ("a", jpeg), ("poison", b"poison"), ("b", jpeg),
        ("unreadable", PipelineError("cannot read", reason="unreadable")), ("c", jpeg),
    ]  # fmt: skip
    pool = HashPool(2, 512 * 1024**2, timeout_seconds=20, job=job)  # type: ignore[arg-type]
    seen: list[tuple[str, str]] = []

    def handle(key: str, outcome: HashJobResult | PipelineError) -> None:
        seen.append((key, outcome.reason if isinstance(outcome, PipelineError) else "hashed"))

    try:
        pool.start()
        asyncio.run(hash_uploads(pool, uploads, GuardLimits(), (Algorithm.PHASH,), handle))
    finally:
        pool.close()
    # In input order; the crash (or MemoryError) kills the pool with the files beside it: they
    # run again alone and are hashed, the poisoned one is reported.
    assert seen == [
        ("a", "hashed"), ("poison", "hash_worker_crashed"), ("b", "hashed"),
        ("unreadable", "unreadable"), ("c", "hashed"),
    ]  # fmt: skip


def test_list_files_stream_with_progress_and_parse_like_text(tmp_path: Path) -> None:
    rows = [f"big,e{i},phash,{i:016x},other,test,note {i}" for i in range(30_000)]
    text = "list,entry_id,algorithm,hash,category,source,note\r\n" + "\r\n".join(rows) + "\r\n"
    path = tmp_path / "big.csv"
    text += "big,bad,phash,zz,other,,\r\n"
    path.write_text(text, newline="")
    reported: list[tuple[str, int]] = []

    class Watch:
        def __init__(self, path: Path, size: int) -> None:
            reported.append((path.name, size))

        def __enter__(self) -> Watch:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def __call__(self, read: int) -> None:
            reported.append(("read", read))

    loaded = load_paths([path], progress=Watch)
    assert len(loaded.entries) == 30_000
    assert [(e.line, e.reason) for e in loaded.errors[str(path)]] == [(30_002, "bad_hash")]
    assert reported[0] == ("big.csv", path.stat().st_size)
    assert sum(n for what, n in reported[1:] if what == "read") == len(text) == len(text.encode())
    assert len(reported) > 2  # advanced in steps, not once at the end
    assert loaded.entries == list(parse_entries(path.read_text(), "big.csv").entries)
