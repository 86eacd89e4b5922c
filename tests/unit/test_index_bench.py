"""``pipeline bench index``: its pybktree memory figure and its argument checks."""

from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path
from typing import Any

import pybktree
import pytest

from pipeline.bench import index as bench


def test_pybktree_bytes_agree_with_what_building_the_tree_allocated() -> None:
    values = bench.clustered_hashes(3000, seed=1).tolist()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tree = pybktree.BKTree(lambda a, b: (a ^ b).bit_count(), values)
        allocated = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The int objects already existed before the build: count the nodes and dicts only.
    ints = sum(v.__sizeof__() for v in values)
    assert bench.pybktree_bytes(tree) - ints == pytest.approx(allocated, rel=0.25)
    assert bench.pybktree_bytes(pybktree.BKTree(lambda a, b: 0)) == 0


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_measure_scan_mih_and_bktree_up_to_10m() -> None:
    args = parse()
    assert args.indexes.split(",") == ["scan", "mih", "bktree"]
    assert args.sizes.split(",")[-1] == "10000000"
    assert bench.PYBKTREE_MAX_SIZE == 1_000_000


def test_unknown_index_kinds_are_refused_before_any_work(capsys: Any) -> None:
    assert bench.run(parse("--indexes", "scan,faiss"), None) == 2  # type: ignore[arg-type]
    assert "unknown index kinds ['faiss']" in capsys.readouterr().err
