"""``pipeline bench index``: Hamming index queries/s and bytes/hash against same-run baselines.

Measures, on one pinned core, every index kind at each list size and radius on clustered
pHash-like hashes (the top bit constant as in imagehash's pHash, members in tight clusters),
with queries half near-members and half strangers. Indexes are built exactly as the matcher
builds them: :func:`pipeline.core.index.select.build_hamming_index` for the kind, the list size
and the radius the index is searched at (the largest threshold of its lists), then one bulk
``add``. ``scan`` is the matcher's linear scan and ``auto`` whatever the selection rule picks,
so the table shows where the rule's switch from scan to MIH belongs.

Baselines measured in the same run: a bare numpy XOR + popcount scan and pybktree (pure
Python, the BK-tree people reach for first; its bytes/hash counts its node tuples, child
dicts and int objects). pybktree is skipped above 1M hashes, where building it would take
minutes, and a note says so. Also reports the exact digest set's lookups/s and bytes/entry.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pipeline.config import Settings

DEFAULT_SIZES = "100000,1000000,10000000"
DEFAULT_RADII = "4,8,12"
DEFAULT_INDEXES = "scan,mih,bktree"
#: pybktree builds at ~20k inserts/s in pure Python: past this size it would take minutes.
PYBKTREE_MAX_SIZE = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pipeline bench index``."""
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="list sizes (default %(default)s)")
    parser.add_argument("--radii", default=DEFAULT_RADII, help="radii (default %(default)s)")
    parser.add_argument(
        "--indexes",
        default=DEFAULT_INDEXES,
        help="index kinds to measure: scan, mih, bktree, auto (default %(default)s)",
    )
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="time budget per cell (default %(default)s)"
    )
    parser.add_argument(
        "--no-pybktree",
        action="store_true",
        help="skip the pybktree baseline (its build takes ~50 s at 1M hashes)",
    )
    parser.add_argument("--queries", type=int, default=2000, help="query pool size")
    parser.add_argument(
        "--pdq",
        action="store_true",
        help="256-bit PDQ-like hashes against faiss IndexBinaryFlat/IndexBinaryMultiHash "
        "instead (sizes default to 1M,10M)",
    )
    parser.add_argument(
        "--pdq-radius", type=int, default=31, help="radius of --pdq (default %(default)s)"
    )
    parser.add_argument(
        "--pdq-indexes", default="mih", help="our kinds for --pdq: mih, scan, auto (default mih)"
    )
    parser.add_argument(
        "--exact-entries",
        type=int,
        default=1_000_000,
        help="size of the exact SHA-256 digest set measured at the end (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42)


def random_digests(rng: Any, count: int) -> list[int]:
    """``count`` uniformly random 256-bit digests from one draw of ``rng`` (numpy Generator):
    ~50x faster than a ``bytes(32)`` call per digest, which took most of a 1M-entry run."""
    raw = rng.bytes(32 * count)
    return [int.from_bytes(raw[i : i + 32], "big") for i in range(0, len(raw), 32)]


def clustered_hashes(size: int, seed: int) -> Any:
    """pHash-like 64-bit values: top bit set, centres with 1-6-bit neighbours (numpy array)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = size // 4 + 1
    top = np.uint64(1 << 63)
    base = rng.integers(0, 1 << 63, size=centres, dtype=np.uint64) | top
    members = np.repeat(base, 4)[:size]
    flips = rng.integers(0, 7, size=size)
    for round_ in range(6):
        bit = np.uint64(1) << rng.integers(0, 63, size=size).astype(np.uint64)
        members = np.where(flips > round_, members ^ bit, members)
    return np.ascontiguousarray(members, dtype=np.uint64)


def query_pool(hashes: Any, count: int, seed: int) -> Any:
    """Half members with 1-4 bits flipped, half random strangers."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    near = hashes[rng.integers(0, hashes.size, size=count // 2)].copy()
    for _ in range(2):
        near ^= np.uint64(1) << rng.integers(0, 63, size=near.size).astype(np.uint64)
    strangers = rng.integers(0, 1 << 63, size=count - near.size, dtype=np.uint64)
    return np.concatenate([near, strangers | np.uint64(1 << 63)])


def numpy_scan(hashes: Any, query: int, radius: int) -> Any:
    """The baseline: positions within ``radius`` by numpy XOR + popcount over every hash."""
    import numpy as np

    return np.flatnonzero(np.bitwise_count(hashes ^ np.uint64(query)) <= radius)


def pybktree_bytes(tree: Any) -> int:
    """Bytes held by a pybktree: every (item, children) tuple, child dict and item int."""
    total = 0
    stack = [tree.tree] if tree.tree is not None else []
    while stack:
        node = stack.pop()
        item, children = node
        total += sys.getsizeof(node) + sys.getsizeof(children) + sys.getsizeof(item)
        stack.extend(children.values())
    return total


def timed_queries(search: Callable[[int], object], queries: Any, budget: float) -> float:
    """Queries/s over the pool, stopping at the time budget (at least 3 queries)."""
    done = 0
    start = time.perf_counter()
    for query in queries.tolist():
        search(query)
        done += 1
        if done >= 3 and time.perf_counter() - start > budget:
            break
    return done / (time.perf_counter() - start)


def bench_size(
    size: int, radii: list[int], kinds: list[str], args: argparse.Namespace, progress: Any
) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """All cells for one list size: baselines first, then each index kind, per radius."""
    import numpy as np
    import pybktree

    from pipeline.core.index.select import RADIUS_DEPENDENT, build_hamming_index

    hashes = clustered_hashes(size, args.seed)
    ids = np.arange(size, dtype=np.int64)
    queries = query_pool(hashes, args.queries, args.seed)
    tree, tree_build, tree_bytes = None, float("nan"), float("nan")
    if size <= PYBKTREE_MAX_SIZE and not args.no_pybktree:
        start = time.perf_counter()
        tree = pybktree.BKTree(lambda a, b: (a ^ b).bit_count(), hashes.tolist())
        tree_build = time.perf_counter() - start
        tree_bytes = pybktree_bytes(tree) / size
    built: dict[str, tuple[Any, float, int]] = {}  # kind -> (index, build seconds, radius)

    def index_for(kind: str, radius: int) -> tuple[Any, float]:
        # Built as the matcher builds it: for the radius it is searched at (MIH's chunk count
        # and the auto rule depend on it); scan and BK-tree do not, so they are built once.
        cached = built.get(kind)
        if cached is None or (kind in RADIUS_DEPENDENT and cached[2] != radius):
            built.pop(kind, None)  # one index of a kind in memory at a time (10M MIH ~0.5 GB)
            start = time.perf_counter()
            index = build_hamming_index(kind, size, radius)
            index.add(ids, hashes)
            built[kind] = (index, time.perf_counter() - start, radius)
        return built[kind][0], built[kind][1]

    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    for radius in radii:
        scan_qps = timed_queries(partial(numpy_scan, hashes, radius=radius), queries, args.seconds)
        pybk_qps = float("nan")
        if tree is not None:
            pybk_qps = timed_queries(partial(tree.find, n=radius), queries, args.seconds)
        progress.update(2)
        rows.append(["numpy-scan", size, radius, scan_qps, hashes.nbytes / size, 1.0, None])
        why_not = "skipped (--no-pybktree)" if args.no_pybktree else "skipped: minutes"
        rows.append([
            "pybktree", size, radius, pybk_qps if tree is not None else why_not,
            tree_bytes, pybk_qps / scan_qps, tree_build,
        ])  # fmt: skip
        results.append(
            {
                "size": size,
                "radius": radius,
                "index": "numpy-scan",
                "queries_per_s": scan_qps,
                "bytes_per_hash": hashes.nbytes / size,
            }
        )
        results.append(
            {
                "size": size,
                "radius": radius,
                "index": "pybktree",
                "queries_per_s": pybk_qps if tree is not None else None,
                "bytes_per_hash": tree_bytes if tree is not None else None,
                "build_s": tree_build if tree is not None else None,
                "skipped": None if tree is not None else why_not,
            }
        )
        for kind in kinds:
            index, build_s = index_for(kind, radius)
            # A list below MIH's merge threshold (4,096) stays in its delta, scanned, until a
            # write folds it: searches never mutate, so that is the steady state measured here.
            # One search first loads the compiled code paths.
            index.search(int(queries[0]), radius)
            qps = timed_queries(partial(index.search, radius=radius), queries, args.seconds)
            progress.update()
            per_hash = index.nbytes / size
            label = f"auto ({index.name})" if kind == "auto" else kind
            if index.name == "mih":
                label += f" M={index.chunks}"
            rows.append([label, size, radius, qps, per_hash, qps / scan_qps, build_s])
            results.append({
                "size": size, "radius": radius, "index": kind, "resolved": index.name,
                "chunks": getattr(index, "chunks", None), "queries_per_s": qps,
                "bytes_per_hash": per_hash, "build_s": build_s,
                "vs_numpy_scan": qps / scan_qps,
                "vs_pybktree": qps / pybk_qps if tree is not None else None,
            })  # fmt: skip
    return rows, results


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark; print the table and write JSON."""
    import numpy as np
    from tqdm import tqdm

    from pipeline.application.tables import format_table
    from pipeline.bench.report import write_json
    from pipeline.core.index.exact import ExactHashSet
    from pipeline.core.index.select import INDEX_KINDS
    from pipeline.core.types import Algorithm

    del settings
    if args.pdq:
        return run_pdq(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    radii = [int(r) for r in args.radii.split(",")]
    kinds = [k.strip() for k in args.indexes.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(INDEX_KINDS))
    if unknown:
        print(f"unknown index kinds {unknown}; choose from {list(INDEX_KINDS)}", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    skipped = [s for s in sizes if s > PYBKTREE_MAX_SIZE]
    if skipped and not args.no_pybktree:
        print(
            f"note: pybktree is skipped above {PYBKTREE_MAX_SIZE:,} hashes (sizes "
            f"{', '.join(f'{s:,}' for s in skipped)}): building it would take minutes",
            file=sys.stderr,
        )
    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    progress = tqdm(
        total=len(sizes) * len(radii) * (len(kinds) + 2), desc="bench index", unit="cell",
        leave=False,
    )  # fmt: skip
    for size in sizes:
        size_rows, size_results = bench_size(size, radii, kinds, args, progress)
        rows += size_rows
        results += size_results
    progress.close()

    exact = ExactHashSet(Algorithm.SHA256)
    rng = np.random.default_rng(args.seed)
    digests = random_digests(rng, args.exact_entries)
    exact.add_many(list(range(len(digests))), digests)
    probes = digests[:20000:2] + random_digests(rng, 10000)
    start = time.perf_counter()
    for digest in probes:
        exact.lookup(digest)
    exact_rate = len(probes) / (time.perf_counter() - start)

    print(
        format_table(
            ["index", "hashes", "radius", "queries/s", "bytes/hash", "x numpy scan", "build s"],
            rows,
        )
    )
    print(
        f"\nexact SHA-256 set, {len(exact):,} entries: {exact_rate:,.0f} lookups/s, "
        f"{exact.nbytes / len(exact):.1f} bytes/entry"
    )
    rate = {(r["size"], r["radius"], r["index"]): r["queries_per_s"] for r in results}
    if {"scan", "mih"} <= set(kinds):
        for radius in radii:
            faster = [s for s in sizes if rate[(s, radius, "mih")] > rate[(s, radius, "scan")]]
            ratios = ", ".join(
                f"{s:,}: {rate[(s, radius, 'mih')] / rate[(s, radius, 'scan')]:.2g}x" for s in sizes
            )
            first = f"{min(faster):,}" if faster else "none measured"
            print(f"mih vs scan at r={radius} ({ratios}); mih faster from {first}")
    if "bktree" in kinds and not args.no_pybktree:
        for size in (s for s in sizes if s <= PYBKTREE_MAX_SIZE):
            for radius in radii:
                ratio = rate[(size, radius, "bktree")] / rate[(size, radius, "pybktree")]
                print(f"bktree vs pybktree at {size:,} hashes, r={radius}: {ratio:,.0f}x")
    exact_summary = {
        "entries": len(exact),
        "lookups_per_s": exact_rate,
        "bytes_per_entry": exact.nbytes / len(exact),
    }
    path = write_json(args.json, "index", {"cells": results, "exact_sha256": exact_summary})
    print(f"\nwrote {path}")
    return 0


PDQ_DEFAULT_SIZES = "1000000,10000000"


def run_pdq(args: argparse.Namespace) -> int:
    """``--pdq``: print the 256-bit table and the ratio to faiss's best; write JSON."""
    from pipeline.application.tables import format_table
    from pipeline.bench.index_pdq import bench_pdq
    from pipeline.bench.report import write_json

    sizes_text = PDQ_DEFAULT_SIZES if args.sizes == DEFAULT_SIZES else args.sizes
    sizes = [int(s) for s in sizes_text.split(",")]
    kinds = [k.strip() for k in args.pdq_indexes.split(",") if k.strip()]
    unknown = sorted(set(kinds) - {"auto", "mih", "scan"})
    if unknown:
        print(f"unknown 256-bit kinds {unknown}; choose from auto, mih, scan", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rows, cells, summary = bench_pdq(sizes, args.pdq_radius, kinds, args)
    headers = ["index", "hashes", "radius", "queries/s", "bytes/hash", "x faiss best", "build s"]
    print(format_table(headers, rows))
    print()
    for line in summary:
        print(line)
    path = write_json(args.json, "index", {"mode": "pdq", "cells": cells})
    print(f"\nwrote {path}")
    return 0
