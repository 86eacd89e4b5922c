"""``pipeline bench index --pdq``: the 256-bit (PDQ) index against faiss's binary indexes.

Measures, on one pinned core, queries/s and bytes/hash at PDQ's radius (31 by default) on
clustered PDQ-like hashes: random 256-bit centres (unrelated PDQ hashes are ~128 bits apart)
with members 0-24 bits away, queries half members 4-24 bits off (copies a list should catch,
some beyond the radius) and half strangers. Ours are built as the matcher builds them
(:func:`pipeline.core.index.select.build_hamming_index` with ``bits=256``), then one bulk add.

Baselines in the same run, single-threaded: faiss ``IndexBinaryFlat`` and
``IndexBinaryMultiHash`` (the anchors' choice), each asked for ``range_search`` at the radius,
one query per call as the matcher asks, and also the whole pool in one call (faiss's batched
path); the better of the two is faiss's figure. A multi-hash configuration is only exact
when ``nflip >= radius // nhash`` over ``nhash * b <= 256`` bits (pigeonhole), so only such
configurations are measured. ``faiss best`` is the fastest faiss row at each size, and every
row of ours is reported against it.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from functools import partial
from typing import Any

#: (nhash, b, nflip) of IndexBinaryMultiHash, each exact at radius 31 (nflip >= 31 // nhash).
MULTIHASH_CONFIGS: tuple[tuple[int, int, int], ...] = ((16, 16, 1), (12, 21, 2), (8, 32, 3))


def pdq_like_hashes(size: int, seed: int) -> Any:
    """``(size, 4)`` uint64 rows: centres of 4 with members 0-24 random bits away."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 1 << 64, size=(size // 4 + 1, 4), dtype=np.uint64)
    members = np.repeat(centres, 4, axis=0)[:size]
    return flip_bits(members, rng.integers(0, 25, size=size), rng)


def flip_bits(rows: Any, counts: Any, rng: Any) -> Any:
    """Each row with ``counts[i]`` random bits flipped (a bit may be drawn twice)."""
    import numpy as np

    rows = rows.copy()
    for round_ in range(int(counts.max()) if counts.size else 0):
        flip = counts > round_
        bit = rng.integers(0, 256, size=rows.shape[0])
        word, shift = bit // 64, (63 - bit % 64).astype(np.uint64)
        sel = np.flatnonzero(flip)
        rows[sel, word[sel]] ^= np.uint64(1) << shift[sel]
    return np.ascontiguousarray(rows)


def pdq_query_pool(hashes: Any, count: int, seed: int) -> Any:
    """Half members 4-24 bits off, half random strangers."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    near = hashes[rng.integers(0, hashes.shape[0], size=count // 2)]
    near = flip_bits(near, rng.integers(4, 25, size=near.shape[0]), rng)
    strangers = rng.integers(0, 1 << 64, size=(count - near.shape[0], 4), dtype=np.uint64)
    return np.ascontiguousarray(np.concatenate([near, strangers]))


def as_bytes(rows: Any) -> Any:
    """Rows as faiss's binary codes: 32 bytes, most significant first (the hex order)."""
    import numpy as np

    return np.ascontiguousarray(rows.astype(">u8").view(np.uint8).reshape(rows.shape[0], 32))


def _record(
    found: dict[str, tuple[float, float, float | None]],
    cells: list[dict[str, Any]],
    size: int,
    radius: int,
    name: str,
    qps: float,
    nbytes: float,
    build: float | None,
    **extra: Any,
) -> None:
    found[name] = (qps, nbytes, build)
    cells.append({
        "size": size, "radius": radius, "index": name, "queries_per_s": qps,
        "bytes_per_hash": nbytes, "build_s": build, **extra,
    })  # fmt: skip


def rss_bytes() -> int:
    """Resident memory of this process (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def faiss_bytes(index: Any) -> int:
    """Bytes faiss holds for an index, measured as its serialised size."""
    import faiss

    return int(faiss.serialize_index_binary(index).size)


def timed(search: Any, queries: Any, budget: float) -> float:
    """Queries/s over the pool, one per call, stopping at the budget (at least 3)."""
    done, start = 0, time.perf_counter()
    for query in queries:
        search(query)
        done += 1
        if done >= 3 and time.perf_counter() - start > budget:
            break
    return done / (time.perf_counter() - start)


def faiss_rates(index: Any, queries: Any, radius: int, budget: float) -> tuple[float, float]:
    """(queries/s one query per call, queries/s in batches) of a faiss ``range_search``."""
    one = timed(lambda q: index.range_search(q[None, :], radius), queries, budget)
    many = timed_batch(lambda q: index.range_search(q, radius), queries, budget)
    return one, many


def timed_batch(search: Any, queries: Any, budget: float) -> float:
    """Queries/s of batched calls on slices of the pool, stopping at the budget."""
    done, start, step = 0, time.perf_counter(), 16
    while done < queries.shape[0]:
        chunk = queries[done : done + step]
        search(chunk)
        done += chunk.shape[0]
        step = min(step * 2, 1024)
        if time.perf_counter() - start > budget:
            break
    return done / (time.perf_counter() - start)


def bench_pdq(
    sizes: list[int], radius: int, kinds: list[str], args: argparse.Namespace
) -> tuple[list[list[Any]], list[dict[str, Any]], list[str]]:
    """Rows (table), cells (JSON) and summary lines for every size."""
    import faiss
    import numpy as np

    from pipeline.core.index.select import build_hamming_index
    from pipeline.core.index.wide import words_to_int

    faiss.omp_set_num_threads(1)
    rows: list[list[Any]] = []
    cells: list[dict[str, Any]] = []
    summary: list[str] = []
    for size in sizes:
        hashes = pdq_like_hashes(size, args.seed)
        queries = pdq_query_pool(hashes, args.queries, args.seed)
        codes, query_codes = as_bytes(hashes), as_bytes(queries)
        query_ints = [words_to_int(row) for row in queries]
        found: dict[str, tuple[float, float, float | None]] = {}  # name -> (q/s, B/hash, build)
        record = partial(_record, found, cells, size, radius)

        start = time.perf_counter()
        flat = faiss.IndexBinaryFlat(256)
        flat.add(codes)
        build = time.perf_counter() - start
        one, many = faiss_rates(flat, query_codes, radius, args.seconds)
        record("faiss-flat", max(one, many), faiss_bytes(flat) / size, build,
               one_per_call=one, batched=many)  # fmt: skip
        del flat
        for nhash, b, nflip in MULTIHASH_CONFIGS:
            if nflip < radius // nhash or nhash * b > 256:
                continue  # not exact at this radius
            gc.collect()
            before = rss_bytes()
            start = time.perf_counter()
            multi = faiss.IndexBinaryMultiHash(256, nhash, b)
            multi.nflip = nflip
            multi.add(codes)
            build = time.perf_counter() - start
            # Its hash maps are not serialisable: count what the process grew by.
            nbytes = (rss_bytes() - before) / size
            one, many = faiss_rates(multi, query_codes, radius, args.seconds)
            record(f"faiss-multihash {nhash}x{b} nflip={nflip}", max(one, many), nbytes, build,
                   one_per_call=one, batched=many, bytes_from_rss=True)  # fmt: skip
            del multi
        faiss_best = max(
            (value for name, value in found.items() if name.startswith("faiss")),
            key=lambda v: v[0],
        )
        for kind in kinds:
            gc.collect()
            start = time.perf_counter()
            index = build_hamming_index(kind, size, radius, bits=256)
            index.add(np.arange(size, dtype=np.int64), hashes)
            build = time.perf_counter() - start
            index.search(query_ints[0], radius)  # compiled code paths loaded
            qps = timed(partial(index.search, radius=radius), query_ints, args.seconds)
            label = f"ours {kind}" + (f" ({index.name})" if kind == "auto" else "")
            if index.name == "mih":
                label += f" M={getattr(index, 'chunks', '?')}"
            record(label, qps, index.nbytes / size, build, vs_faiss_best=qps / faiss_best[0])
            del index
        best_name = max((n for n in found if n.startswith("faiss")), key=lambda n: found[n][0])
        for name, (qps, nbytes, build_s) in found.items():
            rows.append([name, size, radius, qps, nbytes, qps / faiss_best[0], build_s])
        for name, (qps, nbytes, _) in found.items():
            if name.startswith("ours"):
                summary.append(
                    f"{name} at {size:,} hashes, r={radius}: {qps / faiss_best[0]:.1f}x faiss's "
                    f"best ({best_name}, {faiss_best[0]:,.0f} q/s), {nbytes:.1f} bytes/hash"
                )
        del hashes, codes
    return rows, cells, summary
