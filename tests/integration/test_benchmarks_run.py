"""Every `pipeline bench ...` runs end to end on a tiny workload and writes its JSON.

The figures themselves are not asserted (speed is measured by the benchmarks, never by tests);
what is checked is that each benchmark completes, prints its table and records a result for
every row it promises, with ratios against a baseline measured in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def bench(tmp_path: Path, name: str, *args: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / f"{name}.json"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", name, "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["benchmark"] == name
    return result.stdout, data


def test_bench_hashing_runs(tmp_path: Path) -> None:
    stdout, data = bench(tmp_path, "hashing", "--sizes", "640x480", "--seconds", "0.05")
    size = data["sizes"]["640x480"]
    assert set(size["images_per_s"]) == {
        "ours (pHash+dHash)", "ours (all 5 hashes)", "plain imagehash pHash",
        "floor (bare reduced decode)",
    }  # fmt: skip
    assert all(rate > 0 for rate in size["images_per_s"].values())
    assert size["drift_images"] == 40
    assert "drift against plain imagehash" in stdout


def test_bench_index_runs(tmp_path: Path) -> None:
    stdout, data = bench(
        tmp_path, "index", "--sizes", "2000", "--radii", "4,8", "--seconds", "0.05",
        "--exact-entries", "20000",  # the default million took most of this test's minute
    )  # fmt: skip
    rows = {(r["index"], r["radius"]) for r in data["cells"]}
    for kind in ("numpy-scan", "pybktree", "scan", "mih", "bktree"):
        assert {(kind, 4), (kind, 8)} <= rows, kind
    assert "bktree vs pybktree" in stdout
    assert data["exact_sha256"]["entries"] == 20000
    assert data["exact_sha256"]["lookups_per_s"] > 0
    assert "exact SHA-256 set, 20,000 entries" in stdout


def test_bench_index_pdq_runs(tmp_path: Path) -> None:
    stdout, data = bench(
        tmp_path, "index", "--pdq", "--sizes", "3000", "--seconds", "0.05", "--queries", "40",
        "--pdq-indexes", "mih,scan",
    )  # fmt: skip
    assert data["mode"] == "pdq"
    cells = {cell["index"]: cell for cell in data["cells"]}
    assert "faiss-flat" in cells
    assert any(name.startswith("faiss-multihash") for name in cells)
    ours = [cell for name, cell in cells.items() if name.startswith("ours")]
    assert len(ours) == 2
    assert all(cell["radius"] == 31 and cell["vs_faiss_best"] > 0 for cell in ours)
    assert "x faiss's best" in stdout


def test_bench_pipeline_runs(tmp_path: Path) -> None:
    stdout, data = bench(
        tmp_path, "pipeline", "--forms", "binary,s3", "--workers", "1", "--events",
        "30", "--size", "320x240", "--latency-seconds", "1", "--list-entries", "2000",
    )  # fmt: skip
    assert data["bare_hashing_cpu_s_per_upload"] > 0
    rows = {row["form"]: row for row in data["rows"]}
    # Two forms keep CI short: one inline (no origin) and one by reference (an origin's CPU);
    # json and url take the same measuring path (test_bench_cpu checks the per-form rows).
    assert set(rows) == {"binary", "s3"}
    for form, row in rows.items():
        assert row["errors"] == 0, form
        assert row["uploads_per_s"] > 0
        assert row["worker_cpu_s_per_upload"] > 0, "the worker tree's CPU is read"
        assert 0 < row["worker_loop_cpu_s_per_upload"] < row["worker_cpu_s_per_upload"]
        assert row["efficiency"] == pytest.approx(
            data["bare_hashing_cpu_s_per_upload"] / row["worker_cpu_s_per_upload"]
        )
        assert row["latency_at_half_peak"]["answered"] > 0
    assert rows["s3"]["origin_cpu_s_per_upload"] > 0, "moto's CPU is reported beside"
    assert rows["binary"]["origin_cpu_s_per_upload"] == 0
    assert data["time_to_ready"]["entries"] == 2000
    assert "time to ready" in stdout
    assert "efficiency" in stdout


def test_bench_lists_runs(tmp_path: Path) -> None:
    stdout, data = bench(tmp_path, "lists", "--size", "3000", "--algorithms", "phash,pdq")
    for algorithm in ("phash", "pdq"):
        row = data["algorithms"][algorithm]
        assert row["entries_loaded"] == 3000
        assert row["topic_records"] == 3001  # the config and the entries
        assert row["time_to_ready_seconds"] > 0
        assert row["rss_loaded_bytes"] > 0
    assert "B/entry" in stdout


def test_bench_quality_runs_on_bundled_photos(tmp_path: Path) -> None:
    """A small real run: scikit-image's photos only, four transforms. Recall of the identity
    and JPEG q30 copies is the easy case every version of the matcher must keep."""
    stdout, data = bench(
        tmp_path, "quality", "--corpus", "skimage", "--transforms",
        "identity,jpeg_q30,mirror,pad_black", "--non-member-transforms", "identity",
        "--seconds", "0.2",
    )  # fmt: skip
    recall = data["recall"]
    assert list(recall) == ["identity", "jpeg_q30", "mirror", "pad_black"]
    assert all(row["queries"] == 10 for row in recall.values())
    for name in ("identity", "jpeg_q30"):
        assert recall[name]["decision_percent"] >= 90, recall[name]
        assert recall[name]["phash_percent"] >= 90, recall[name]
    false = data["false_matches"]
    assert false["pairs"] == 10 * 10
    assert set(false["by_algorithm"]) >= {"phash", "dhash"}
    low = data["low_information"]
    assert len(low["pictures"]) >= 20
    assert {row["family"] for row in low["pictures"]} >= {
        "uniform", "gradient", "vignette", "stripes",
    }  # fmt: skip
    assert data["speed_1080p"]["images_per_s"]["today: reduced decode + pHash + dHash"] > 0
    assert data["gated_members"] == []  # no scikit-image photo is refused as listed
    assert "any (decision) %" in stdout
    assert "low-information pictures" in stdout


def test_bench_video_runs(tmp_path: Path) -> None:
    """A small real run: one 720p H.264 clip for speed, three originals for recall."""
    stdout, data = bench(
        tmp_path, "video", "--sizes", "1280x720", "--codecs", "h264", "--seconds", "4",
        "--clips", "3", "--clip-seconds", "4", "--vpdq-entries", "20",
        "--vpdq-upload-seconds", "8",
    )  # fmt: skip
    (speed,) = data["speed"]
    assert speed["realtime_factor"] > 0
    assert 0 < speed["decoded_frames"] <= speed["frames"]
    assert set(data["recall"]) >= {"reencoded_h264_crf40", "letterboxed", "trimmed_30"}
    assert data["recall"]["reencoded_h264_crf40"]["percent"] == 100
    assert data["false_matches"] == {"pairs": 3 * 2 * len(data["recall"]), "matches": 0}
    assert "x realtime" in stdout
    cost = data["vpdq_list_cost"]
    assert cost["entries"] == 20
    assert cost["upload_features"] > 0
    assert cost["cpu_ms_per_entry"] > 0
    assert "vPDQ list matching" in stdout
