"""Exact-digest sets for MD5, SHA-1 and SHA-256 list entries.

Owns lookup of ids by full digest. Entries live in sorted numpy arrays keyed by the digest's
top 64 bits (candidates found by binary search, confirmed against the full digest, ~40 bytes
per SHA-256 entry) plus a small dict of recent additions; removals of sorted entries are
tombstones; both are folded into the arrays when they grow (build, then swap). Readers search
:meth:`ExactHashSet.snapshot` copies while the writer changes the original. Must not do I/O.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.types import Algorithm


class ExactHashSet:
    """Digest -> ids for one exact algorithm (ids unique and never reused, as for indexes)."""

    def __init__(self, algorithm: Algorithm) -> None:
        if algorithm.is_perceptual:
            raise ValueError(f"{algorithm} is not an exact digest")
        self.algorithm = algorithm
        self._width = algorithm.bits // 8
        self._prefix_shift = algorithm.bits - 64
        self._prefixes = np.empty(0, np.uint64)
        self._digests = np.empty((0, self._width), np.uint8)
        self._ids = np.empty(0, np.int64)
        self._recent: dict[int, list[int]] = {}
        #: id -> digest of the recent entries, and the sorted entries' ids in order (made on
        #: the first :meth:`discard` after a merge): removal by id alone.
        self._recent_digest: dict[int, int] = {}
        self._by_id: np.ndarray | None = None
        self._recent_count = 0
        self._tombstones: set[int] = set()

    def _digest_bytes(self, digest: int) -> bytes:
        return digest.to_bytes(self._width, "big")

    def add(self, id_: int, digest: int) -> None:
        """Store ``id_`` under ``digest``."""
        self._recent.setdefault(digest, []).append(id_)
        self._recent_digest[id_] = digest
        self._recent_count += 1
        if self._recent_count > max(4096, self._prefixes.size // 8):
            self._merge()

    def add_many(self, ids: list[int], digests: list[int]) -> None:
        """Bulk :meth:`add` (one merge at the end)."""
        for id_, digest in zip(ids, digests, strict=True):
            self._recent.setdefault(digest, []).append(id_)
            self._recent_digest[id_] = digest
        self._recent_count += len(ids)
        if self._recent_count > max(4096, self._prefixes.size // 8):
            self._merge()

    def remove(self, id_: int, digest: int) -> bool:
        """Forget ``id_`` stored under ``digest``; False if it was not there."""
        recent = self._recent.get(digest)
        if recent and id_ in recent:
            recent.remove(id_)
            if not recent:
                del self._recent[digest]
            del self._recent_digest[id_]
            self._recent_count -= 1
            return True
        if id_ in self._tombstones or id_ not in self._sorted_ids(digest):
            return False
        self._tombstones.add(id_)
        if len(self._tombstones) > max(4096, self._prefixes.size // 8):
            self._merge()
        return True

    def discard(self, id_: int) -> bool:
        """Forget ``id_`` without its digest; False if it was not there."""
        digest = self._recent_digest.get(id_)
        if digest is not None:
            return self.remove(id_, digest)
        if self._by_id is None:
            self._by_id = np.sort(self._ids)
        at = int(np.searchsorted(self._by_id, id_))
        if at == self._by_id.size or int(self._by_id[at]) != id_:
            return False
        if id_ in self._tombstones:
            return False
        self._tombstones.add(id_)
        if len(self._tombstones) > max(4096, self._prefixes.size // 8):
            self._merge()
        return True

    def _sorted_ids(self, digest: int) -> list[int]:
        prefix = np.uint64(digest >> self._prefix_shift)
        lo = int(np.searchsorted(self._prefixes, prefix, side="left"))
        hi = int(np.searchsorted(self._prefixes, prefix, side="right"))
        if lo == hi:
            return []
        wanted = np.frombuffer(self._digest_bytes(digest), np.uint8)
        same = np.all(self._digests[lo:hi] == wanted, axis=1)
        return [int(i) for i in self._ids[lo:hi][same]]

    def lookup(self, digest: int) -> list[int]:
        """Ids stored under ``digest`` (empty when none), in ascending order."""
        found = [i for i in self._sorted_ids(digest) if i not in self._tombstones]
        found.extend(self._recent.get(digest, ()))
        return sorted(found)

    def _merge(self) -> None:
        live = ~np.isin(self._ids, np.fromiter(self._tombstones, np.int64, len(self._tombstones)))
        prefixes = [self._prefixes[live]]
        digests = [self._digests[live]]
        ids = [self._ids[live]]
        if self._recent:
            new_digests = [d for d, members in self._recent.items() for _ in members]
            new_ids = [i for members in self._recent.values() for i in members]
            raw = b"".join(self._digest_bytes(d) for d in new_digests)
            prefixes.append(
                np.array([d >> self._prefix_shift for d in new_digests], dtype=np.uint64)
            )
            digests.append(np.frombuffer(raw, np.uint8).reshape(-1, self._width))
            ids.append(np.array(new_ids, dtype=np.int64))
        all_prefixes = np.concatenate(prefixes)
        order = np.argsort(all_prefixes, kind="stable")
        self._prefixes = all_prefixes[order]
        self._digests = np.concatenate(digests)[order]
        self._ids = np.concatenate(ids)[order]
        self._recent.clear()
        self._recent_digest.clear()
        self._by_id = None
        self._recent_count = 0
        self._tombstones.clear()

    def __len__(self) -> int:
        return int(self._ids.size) - len(self._tombstones) + self._recent_count

    def snapshot(self) -> ExactHashSet:
        """A copy for readers, unaffected by later adds and removes (the sorted arrays are
        shared: merges replace them, never change them; the recent entries are copied)."""
        copy = object.__new__(ExactHashSet)
        copy.__dict__.update(self.__dict__)
        copy._recent = {digest: list(ids) for digest, ids in self._recent.items()}
        copy._recent_digest = {}  # readers never remove
        copy._tombstones = set(self._tombstones)
        return copy

    @property
    def nbytes(self) -> int:
        """Bytes held (recent entries and tombstones estimated at Python object cost)."""
        arrays = self._prefixes.nbytes + self._digests.nbytes + self._ids.nbytes
        return int(arrays + 120 * self._recent_count + 60 * len(self._tombstones))
