"""Matching an upload's hashes against every loaded hash list.

Owns the in-memory state a worker screens with: list configs, entries in columns
(:class:`pipeline.core.entrystore.EntryStore`: no Python object per entry), and one index per
algorithm (exact-digest sets for MD5/SHA-1/SHA-256, a Hamming index for pHash/dHash/PDQ) over
the store's row numbers, which are allocated monotonically and never reused. A match's
:class:`Match` is made from the columns only for a hit. Each perceptual index is searched once
at the largest threshold of any enabled list, then hits are filtered per list, so adding lists
does not multiply search cost.

Writer and readers: one writer (a thread at a time: the hash-list feed's worker thread in the
worker) applies updates (upsert, retract, list config changes) to its own indexes, then
*publishes* a :class:`MatcherView`: the configs, the columns as of that moment and a read-only
snapshot of each index changed since the last view (built tables shared, only the small delta
and tombstones copied). A match reads the one view reference it finds, so it never sees half of
an update, never changes anything, and never waits for the writer. A load from empty is
deferred (:meth:`Matcher.defer_builds`): entries go to the columns only and each index is built
once, from everything, by :meth:`Matcher.build`, which then publishes.

Each perceptual index is built for that radius and its size by
:func:`pipeline.core.index.select.build_hamming_index` (the constructor ``pipeline bench
index`` measures). After every change that can move either (entries added or retracted, a list
config set or removed) the index is re-planned: under ``auto`` a list that outgrew the scan,
or whose radius now calls for another kind, is rebuilt as that kind and swapped in; MIH is
told the new radius and rebuilds only if that changes its chunk count. A list never moves back
to the scan because entries were retracted (no flapping around the size threshold).

An upload is searched as views (:class:`pipeline.core.hashing.View`): each region hashed (the
whole picture first) in each of the eight orientations, every distinct value once. An entry is
reported once, by its nearest hit that counts; ties go to the earlier view, then the earlier
orientation, so an upright whole-picture match is always reported as such. Variants are exact
searches of the same index at the same radius, never an approximation. What counts: a view too
plain to mean anything (``View.low_information``: its pHash is undecided, see
:mod:`pipeline.core.detail`) is not searched at all. A hit in a turned orientation counts only
within its list's threshold less :data:`TURNED_MARGIN`. A dHash hit counts on its own only
within :data:`DHASH_ALONE` bits and when neither hash is the hash of a smooth picture
(:data:`~pipeline.core.detail.DHASH_MIN_TRANSITIONS`); otherwise, up to its list's threshold,
only upright and when corroborated by a pHash near miss of its list in the same view, upright
(:data:`CORROBORATION`). A view's PDQ below :data:`~pipeline.core.hashlist.PDQ_MIN_QUALITY` is
not searched (PDQ's convention).

An entry whose list has no config is *held*: stored and indexed, but never matched, until
its list's config arrives (list configs and entries can arrive in any order from different
partitions, and a config can be retracted). Matching it under a default policy would guess the
list's kind, action and thresholds: an allow list's entries would produce deny matches, a
block list's only reviews. :meth:`Matcher.held_counts` says what is held; a caller that has
no configs to give (a bare list file offline) sets an explicit default with :meth:`set_list`.
Exact digests match at distance 0 on every configured list (:meth:`ListConfig.threshold`).

vPDQ entries (a whole video's frames, :class:`~pipeline.core.hashlist.VpdqEntry`) are kept
apart from the columns, in a plain mapping by key: they are variable-length sets, few per list
(a video list holds thousands, not millions), and an upload is compared with each in turn
(:func:`pipeline.core.videomatch.match_vpdq_entries`). The view carries the vPDQ entries of
enabled, configured lists; those of a list with no config are held like any entry.
Must not do I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pipeline.core.detail import DHASH_MIN_TRANSITIONS, dhash_transitions
from pipeline.core.entrystore import (
    ALGORITHM_CODES,
    ALGORITHMS,
    EntryBatch,
    EntryStore,
    RowReader,
)
from pipeline.core.hashing import View
from pipeline.core.hashlist import (
    DEFAULT_THRESHOLDS,
    PDQ_MIN_QUALITY,
    Category,
    CompactFeature,
    HashListEntry,
    ListConfig,
    ListKind,
    VpdqEntry,
)
from pipeline.core.index.base import HammingIndex, I64Array
from pipeline.core.index.exact import ExactHashSet
from pipeline.core.index.mih import MultiIndexHash
from pipeline.core.index.mih256 import MultiIndexHash256
from pipeline.core.index.select import (
    build_hamming_index,
    choose_index_kind,
    kind_for_width,
    mih_ever,
)
from pipeline.core.index.wide import BruteForceIndex256, as_words
from pipeline.core.orientation import ORIENTATIONS, Orientation
from pipeline.core.regions import Region
from pipeline.core.types import EXACT_ALGORITHMS, PERCEPTUAL_ALGORITHMS, Action, Algorithm


@dataclass(frozen=True, slots=True)
class Match:
    """One entry an upload matched, with everything needed to explain it."""

    list_name: str
    list_version: str
    list_kind: ListKind
    list_action: Action
    entry_id: str
    category: Category
    algorithm: Algorithm
    distance: int
    threshold: int
    orientation: Orientation = Orientation.IDENTITY
    """How the upload is turned relative to the listed picture (``mirror``: a mirrored copy)."""
    region: Region | None = None
    """Which part of the upload matched, in its pixels; None when matched without views."""
    frame_seconds: tuple[float, ...] = ()
    """For a video: when the sampled frames that matched are shown (seconds into the upload,
    earliest first); empty for an image or a match of the file's digest."""
    vpdq: VpdqShares | None = None
    """For a match of a vPDQ (whole-video) entry: the shares of frames that matched (its
    ``algorithm`` is then ``pdq``, its distance the nearest frame pair's); else None."""


@dataclass(frozen=True, slots=True)
class VpdqShares:
    """How a video matched a vPDQ entry: the percent of the upload's usable frames that match
    some entry frame and of the entry's frames matched, with the thresholds they reached."""

    query_percent: float
    entry_percent: float
    query_threshold: float
    entry_threshold: float


#: A dHash match counts on its own only this close to its entry, and only when neither the
#: upload's dHash nor the entry's is the hash of a smooth picture (fewer than
#: :data:`~pipeline.core.detail.DHASH_MIN_TRANSITIONS` neighbouring bits differ: gradients,
#: vignettes, soft shapes, a sky). Otherwise, up to its list's dHash threshold, it needs
#: corroboration: a pHash entry of the same list that the same view of the upload, turned the
#: same way, nearly matches: farther than the list's pHash threshold (a pHash hit within it is a
#: match of its own entry and vouches for no other), at most :data:`CORROBORATION` bits.
#:
#: Measured with ``pipeline bench quality`` (100 listed photos x 500 unrelated ones): dHash alone
#: at radius 10 made 252 false pairs of 50,000, pHash 1. Corroboration by any pHash entry
#: within 12 bits of the same view and orientation took them to 9, all dHash matches at 2-4
#: bits between smooth pictures (plasma wallpapers against a stripe, a wood-grain and a
#: photographed-page member, whose dHashes have 0-9 transitions); requiring transitions on both
#: sides removed those 7 at a cost of 3 crops and 4 small turns of the 2,500 listed-photo
#: queries (smooth members lose their dHash-only matches). The near-miss form changes no recall
#: and halves the spurious co-matches of a true copy (its own pHash hit at 0-8 bits used to
#: vouch for every other entry within dHash 10 of it: 65 such pairs among the members, 30 now).
DHASH_ALONE = 4
#: The corroborating algorithms and how near (inclusive) a near miss must be. Only the upright
#: orientation corroborates and is corroborated (:data:`TURNED_MARGIN`).
CORROBORATION: Mapping[Algorithm, int] = MappingProxyType({Algorithm.PHASH: 12})

#: A hit in a turned orientation (anything but upright) counts only this many bits inside its
#: list's threshold, and a turned dHash hit only on its own (:func:`counts_alone`), never by
#: corroboration. Seven turned orientations of every view are seven more chances for an
#: unrelated picture to come near an entry, while a turned copy is an exact transpose of the
#: listed picture: its hits lie at the upright copy's distances, 0-2 bits for 476 of the 497
#: turned whole-picture pHash hits measured. Measured with ``pipeline bench quality`` (98
#: listed photos x 510 unrelated ones, 49,980 pairs, each unrelated photo also mirrored,
#: letterboxed, in a chat screenshot, with meme bars, turned 4 degrees and cropped 5%): the last
#: 2 false pairs were both letterboxed pictures whose whole view, turned, came near a wallpaper
#: (pHash 8 turned 180 degrees; dHash 8 transposed, corroborated by a pHash near miss of another
#: entry); with these rules 0, and no listed-photo query lost.
TURNED_MARGIN: Mapping[Algorithm, int] = MappingProxyType({Algorithm.PHASH: 2})


def turned_threshold(algorithm: Algorithm, threshold: int, orientation: Orientation) -> int:
    """The distance a hit of ``algorithm`` in ``orientation`` counts within, given its list's
    ``threshold``: less :data:`TURNED_MARGIN` for a turned one (never below 0)."""
    if orientation is Orientation.IDENTITY:
        return threshold
    return max(0, threshold - TURNED_MARGIN.get(algorithm, 0))


def counts_alone(algorithm: Algorithm, distance: int, query: int, entry: int) -> bool:
    """Whether a hit of ``algorithm`` at ``distance`` between the upload's ``query`` value and
    an ``entry`` value counts without corroboration (every algorithm but dHash always does)."""
    if algorithm is not Algorithm.DHASH:
        return True
    return (
        distance <= DHASH_ALONE
        and min(dhash_transitions(query), dhash_transitions(entry)) >= DHASH_MIN_TRANSITIONS
    )


#: One perceptual query: (value, the orientation it was hashed in, view position, region).
_Query = tuple[int, Orientation, int, Region | None]
_ORIENTATION_ORDER = {orientation: position for position, orientation in enumerate(ORIENTATIONS)}
#: Where a hit ranks among an entry's hits: (distance, view position, orientation order).
_Rank = tuple[int, int, int]


class _Hits:
    """One upload's hits per entry (internal id): the nearest that counts so far, and the
    upright dHash hits that count only if corroborated (resolved once all are in)."""

    __slots__ = ("counted", "waiting")

    def __init__(self) -> None:
        self.counted: dict[int, tuple[_Rank, Match]] = {}
        self.waiting: dict[int, list[tuple[_Rank, Match]]] = {}

    def beaten(self, internal: int, rank: _Rank) -> bool:
        """Whether the entry already counts by a hit ranked at or before ``rank``."""
        kept = self.counted.get(internal)
        return kept is not None and kept[0] <= rank

    def keep(self, internal: int, rank: _Rank, match: Callable[[], Match]) -> None:
        """Count the hit when it is the entry's nearest (``match`` builds it only then)."""
        if not self.beaten(internal, rank):
            self.counted[internal] = (rank, match())


def usable_features(
    features: Iterable[CompactFeature], quality: int = PDQ_MIN_QUALITY
) -> list[CompactFeature]:
    """vPDQ's filters, in its order: the first feature of each distinct hash, then those at or
    above ``quality`` (a hash first seen below it is dropped, whatever repeats it)."""
    seen: set[int] = set()
    kept = []
    for feature in features:
        if feature.pdq not in seen:
            seen.add(feature.pdq)
            kept.append(feature)
    return [feature for feature in kept if feature.quality >= quality]


def pdq_words(values: Sequence[int]) -> npt.NDArray[np.uint64]:
    """256-bit hashes as rows of four 64-bit words."""
    raw = b"".join(value.to_bytes(32, "big") for value in values)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(values), 4)


Operation = (
    tuple[Literal["entry"], tuple[str, str], HashListEntry | None]
    | tuple[Literal["list"], str, ListConfig | None]
    | tuple[Literal["vpdq"], tuple[str, str], VpdqEntry | None]
)


@dataclass(frozen=True, slots=True)
class MatcherView:
    """The lists as of one published moment: what a match reads. Never changes; the writer
    (:class:`Matcher`) publishes a new one after each change, as one reference swap."""

    configs: Mapping[str, ListConfig]
    rows: RowReader
    hamming: Mapping[Algorithm, HammingIndex]
    exact: Mapping[Algorithm, ExactHashSet]
    #: Per perceptual algorithm, the radius its index is searched at (absent: not searched).
    radii: Mapping[Algorithm, int]
    #: vPDQ entries of enabled, configured lists (matched by :mod:`pipeline.core.videomatch`),
    #: without their frames: those are ``video_words``.
    videos: tuple[VpdqEntry, ...] = ()
    #: Per entry of ``videos``: its usable frames (:func:`usable_features`) as
    #: :func:`pdq_words`, computed once when the entry was stored.
    video_words: tuple[npt.NDArray[np.uint64], ...] = ()

    def match(self, hashes: Mapping[Algorithm, int], views: Sequence[View] = ()) -> list[Match]:
        """Every (list, entry) the upload matches under each list's policy, nearest first.

        ``hashes``: the upload's hashes; its exact digests are looked up, and its perceptual
        values are searched as the upright whole picture when ``views`` is empty. ``views``:
        when given, they replace ``hashes``' perceptual values (see the module docstring).
        Disabled lists never match. Allow-list matches are included (kind ``allow``): the
        decision policy decides what they suppress.
        """
        hits = _Hits()
        for algorithm, value in hashes.items():
            if not algorithm.is_perceptual:
                for internal in self.exact[algorithm].lookup(value):
                    self._consider(
                        hits, internal, algorithm, 0, (value, Orientation.IDENTITY, 0, None)
                    )
        queries_by_algorithm = self._perceptual_queries(hashes, views)
        for algorithm, queries in queries_by_algorithm.items():
            radius = self.radii.get(algorithm)
            if radius is None:
                continue
            values = [query[0] for query in queries]
            for query, found_hits in zip(
                queries, self.hamming[algorithm].search_many(values, radius), strict=True
            ):
                for internal, distance in found_hits:
                    self._consider(hits, internal, algorithm, distance, query)
        if hits.waiting:
            corroborated = self._corroborated(hashes, views)
            for internal, waiting in hits.waiting.items():
                for rank, match in waiting:
                    if (match.list_name, rank[1]) in corroborated and not hits.beaten(
                        internal, rank
                    ):
                        hits.counted[internal] = (rank, match)
        found = [match for _, match in hits.counted.values()]
        found.sort(key=lambda m: (m.distance, m.list_name, m.entry_id, m.algorithm))
        return found

    def _corroborated(
        self, hashes: Mapping[Algorithm, int], views: Sequence[View]
    ) -> set[tuple[str, int]]:
        """(list, view position) for each view of the upload whose upright hash nearly matches
        an entry of a corroborating algorithm on that list: farther than the list's threshold
        for it, within :data:`CORROBORATION` bits (searched only when a match needs it). A
        dHash hit is corroborated only by the same view, upright: any view and orientation
        would make chance corroborations grow faster with the list (32 queries against 10M
        pHashes), and a turned copy needs none (:data:`TURNED_MARGIN`)."""
        found: set[tuple[str, int]] = set()
        for algorithm, radius in CORROBORATION.items():
            index = self.hamming[algorithm]
            where: dict[int, list[int]] = {}
            if views:
                for position, view in enumerate(views):
                    if view.low_information or algorithm not in view.hashes:
                        continue
                    where.setdefault(view.hashes[algorithm].identity, []).append(position)
            elif algorithm in hashes:
                where[hashes[algorithm]] = [0]
            if not where or not len(index):
                continue
            values = list(where)
            for value, hits in zip(values, index.search_many(values, radius), strict=True):
                names = ((self.rows.list_name(internal), distance) for internal, distance in hits)
                lists = {
                    name for name, distance in names if self._near_miss(name, algorithm, distance)
                }
                found.update((name, position) for name in lists for position in where[value])
        return found

    def _near_miss(self, list_name: str, algorithm: Algorithm, distance: int) -> bool:
        """Whether a hit at ``distance`` on ``list_name`` is beyond what that list matches by
        ``algorithm`` (a match of its own entry is no near miss)."""
        config = self.configs.get(list_name)
        threshold = None if config is None or not config.enabled else config.threshold(algorithm)
        return threshold is None or distance > threshold

    @staticmethod
    def _perceptual_queries(
        hashes: Mapping[Algorithm, int], views: Sequence[View]
    ) -> dict[Algorithm, list[_Query]]:
        """Each distinct perceptual value to search, per algorithm, with where it came from."""
        queries: dict[Algorithm, list[_Query]] = {}
        if not views:
            for algorithm, value in hashes.items():
                # PDQ only with its quality, which only views carry.
                if algorithm.is_perceptual and algorithm is not Algorithm.PDQ:
                    queries[algorithm] = [(value, Orientation.IDENTITY, 0, None)]
            return queries
        for position, view in enumerate(views):
            if view.low_information:
                continue  # near-uniform, gradient, vignette, stripes: near everything and nothing
            for algorithm, oriented in view.hashes.items():
                if algorithm is Algorithm.PDQ and (view.pdq_quality or 0) < PDQ_MIN_QUALITY:
                    continue  # PDQ's own rule: too little for its hash to be trusted
                queries.setdefault(algorithm, []).extend(
                    (value, orientation, position, view.region)
                    for value, orientation in oriented.distinct().items()
                )
        return queries

    def _consider(
        self,
        hits: _Hits,
        internal: int,
        algorithm: Algorithm,
        distance: int,
        query: _Query,
    ) -> None:
        """Keep the hit if its list's policy allows it (see the module docstring): as the
        entry's nearest counting hit so far, or as waiting for corroboration."""
        value, orientation, position, region = query
        rank = (distance, position, _ORIENTATION_ORDER[orientation])
        if hits.beaten(internal, rank):
            return
        list_name = self.rows.list_name(internal)
        config = self.configs.get(list_name)
        if config is None:
            return  # held: no policy to match it under
        threshold = config.threshold(algorithm)
        if not config.enabled or threshold is None:
            return
        threshold = turned_threshold(algorithm, threshold, orientation)
        if distance > threshold:
            return

        def match() -> Match:
            return Match(
                list_name=list_name,
                list_version=config.version,
                list_kind=config.kind,
                list_action=config.action,
                entry_id=self.rows.entry_id(internal),
                category=self.rows.category(internal),
                algorithm=algorithm,
                distance=distance,
                threshold=threshold,
                # The query is the upload turned by ``orientation``; the upload is therefore
                # the listed picture turned by its inverse.
                orientation=orientation.inverse,
                region=region,
            )

        if counts_alone(algorithm, distance, value, self.rows.value64(internal)):
            hits.keep(internal, rank, match)
        elif orientation is Orientation.IDENTITY:
            hits.waiting.setdefault(internal, []).append((rank, match()))


#: A run of entries to add, in columns (the hash-list feed's bulk form of ``entry`` records).
EntriesOperation = tuple[Literal["entries"], None, EntryBatch]


class Matcher:
    """All loaded lists and their indexes; see the module docstring for the rules.

    One writer (a thread at a time) calls the mutating methods; any thread may call
    :meth:`match`, which reads the last published :class:`MatcherView`."""

    def __init__(self, index_kind: str = "auto", expected_size: int = 0) -> None:
        """``index_kind``: "auto", "mih", "bktree" or "scan" (ValueError otherwise).
        ``expected_size`` only sizes the first, empty indexes; every load re-plans them."""
        self._index_kind = index_kind
        #: Replaced, never changed in place, so other threads may read them at any time.
        self._configs: dict[str, ListConfig] = {}
        self._counts: dict[tuple[str, Algorithm], int] = {}
        self._store = EntryStore()
        self._exact = {alg: ExactHashSet(alg) for alg in EXACT_ALGORITHMS}
        self._hamming: dict[Algorithm, HammingIndex] = {
            alg: build_hamming_index(
                index_kind, expected_size, DEFAULT_THRESHOLDS[alg], bits=alg.bits
            )
            for alg in PERCEPTUAL_ALGORITHMS
        }
        self._live = 0
        #: vPDQ entries by key (replaced, never changed in place; see the module docstring).
        self._videos: dict[tuple[str, str], VpdqEntry] = {}
        self._video_words: dict[tuple[str, str], npt.NDArray[np.uint64]] = {}
        #: While builds are deferred (:meth:`defer_builds`): per algorithm, the (rows, values)
        #: added since, and the first row added since.
        self._deferred: dict[Algorithm, list[tuple[I64Array, Any]]] | None = None
        self._deferred_from = 0
        self._holding = False
        self._dirty: set[Algorithm] = set(Algorithm)
        self._snapshots: dict[Algorithm, HammingIndex | ExactHashSet] = {}
        self._view = self._snapshot()

    # -- reading --------------------------------------------------------------------------------

    @property
    def view(self) -> MatcherView:
        """The lists as last published (what :meth:`match` searches)."""
        return self._view

    def match(self, hashes: Mapping[Algorithm, int], views: Sequence[View] = ()) -> list[Match]:
        """:meth:`MatcherView.match` on the last published view (never changes any state)."""
        return self._view.match(hashes, views)

    # -- lists --------------------------------------------------------------------------------

    def set_list(self, config: ListConfig) -> None:
        """Add or replace a list's policy (takes effect for the next match).

        May rebuild a perceptual index when the largest threshold changes (see the module doc).
        """
        self._configs = {**self._configs, config.name: config}
        for algorithm in PERCEPTUAL_ALGORITHMS:
            self._plan(algorithm)
        self._publish()

    def remove_list(self, name: str) -> None:
        """Forget a list's policy; its entries are held (match nothing) until a config arrives
        again or they are retracted."""
        self._configs = {key: value for key, value in self._configs.items() if key != name}
        for algorithm in PERCEPTUAL_ALGORITHMS:
            self._plan(algorithm)
        self._publish()

    def config(self, name: str) -> ListConfig | None:
        """The policy in force for list ``name``; None when it has none (its entries are held)."""
        return self._configs.get(name)

    def held_counts(self) -> dict[str, int]:
        """Entries held per list: lists with entries and no config (see the module docstring)."""
        held: Counter[str] = Counter()
        configs = self._configs
        for (name, _), count in self._counts.items():
            if name not in configs:
                held[name] += count
        for name, _ in self._videos:
            if name not in configs:
                held[name] += 1
        return dict(held)

    @property
    def lists(self) -> tuple[str, ...]:
        """Names of every list with a config or at least one entry."""
        names = {name for name, _ in self._counts} | {name for name, _ in self._videos}
        return tuple(sorted(set(self._configs) | names))

    # -- entries ------------------------------------------------------------------------------

    def upsert(self, entries: Iterable[HashListEntry]) -> int:
        """Add entries; an entry re-published under the same key replaces the old one.
        Returns the number of entries added or changed (identical re-publishes are no-ops)."""
        listed = list(entries)
        return self.upsert_batch(
            EntryBatch(
                list_names=[e.list_name for e in listed],
                entry_ids=[e.entry_id for e in listed],
                algorithms=[e.hash.algorithm for e in listed],
                values=[e.hash.value for e in listed],
                categories=[e.category for e in listed],
            )
        )

    def upsert_batch(self, batch: EntryBatch) -> int:
        """:meth:`upsert` of entries given as columns (no object per entry)."""
        count = len(batch)
        if count:
            keys = list(zip(batch.list_names, batch.entry_ids, strict=True))
            last = dict(zip(keys, range(count), strict=True))
            if len(last) < count:  # a key repeated in the batch: its last entry wins
                batch = _select(batch, sorted(last.values()))
            batch = self._without_unchanged(batch)
        if not len(batch):
            self._publish()
            return 0
        rows = self._store.add(batch)
        counts = dict(self._counts)
        for key, added in Counter(zip(batch.list_names, batch.algorithms, strict=True)).items():
            counts[key] = counts.get(key, 0) + added
        self._counts = counts
        self._live += len(batch)
        codes = np.fromiter((ALGORITHM_CODES[a] for a in batch.algorithms), np.uint8, len(batch))
        for code in np.unique(codes).tolist():
            algorithm = ALGORITHMS[code]
            chosen = np.flatnonzero(codes == code)
            ids = rows[chosen]
            values = [batch.values[i] for i in chosen.tolist()]
            self._dirty.add(algorithm)
            if self._deferred is not None:
                self._deferred.setdefault(algorithm, []).append(
                    (ids, _index_values(algorithm, values))
                )
            elif algorithm.is_perceptual:
                # Planned for the size it is about to reach, so a bulk load goes straight
                # into the index that will serve it.
                self._plan(algorithm, extra=len(ids))
                self._hamming[algorithm].add(ids, _index_values(algorithm, values))
            else:
                self._exact[algorithm].add_many(ids.tolist(), values)
        for algorithm in PERCEPTUAL_ALGORITHMS:
            self._plan(algorithm)  # replacements may have moved the radius
        self._publish()
        return len(batch)

    def _without_unchanged(self, batch: EntryBatch) -> EntryBatch:
        """``batch`` less the entries stored already exactly so; the rows of the others' keys
        are dropped (they are replaced)."""
        old = self._store.find(batch.list_names, batch.entry_ids)
        present = np.flatnonzero(old >= 0).tolist()
        if not present:
            return batch
        unchanged: set[int] = set()
        replaced: list[int] = []
        for i in present:
            row = int(old[i])
            if self._store.same(row, batch.algorithms[i], batch.values[i], batch.categories[i]):
                unchanged.add(i)
            else:
                replaced.append(row)
        if replaced:
            self._drop(np.array(replaced, dtype=np.int64))
        if not unchanged:
            return batch
        return _select(batch, [i for i in range(len(batch)) if i not in unchanged])

    def upsert_videos(self, entries: Iterable[VpdqEntry]) -> int:
        """Add or replace vPDQ entries (by key); returns how many were added or changed.

        Only the usable frames are kept, as words (32 bytes a frame; the entry itself is kept
        without its frames): a frame object costs ~150 bytes, 1 GB for 1,000 entries at the
        7,200-frame cap."""
        changed: dict[tuple[str, str], VpdqEntry] = {}
        words: dict[tuple[str, str], npt.NDArray[np.uint64]] = {}
        for entry in entries:
            usable = pdq_words([f.pdq for f in usable_features(entry.frames)])
            slim = replace(entry, frames=())
            old = self._video_words.get(entry.key)
            unchanged = old is not None and np.array_equal(old, usable)
            if unchanged and self._videos.get(entry.key) == slim:
                continue
            changed[entry.key] = slim
            words[entry.key] = usable
        if changed:
            self._videos = {**self._videos, **changed}
            self._video_words = {**self._video_words, **words}
            self._publish()
        return len(changed)

    def retract_videos(self, keys: Iterable[tuple[str, str]]) -> int:
        """Remove vPDQ entries by (list, entry id); unknown keys are ignored."""
        gone = {key for key in keys if key in self._videos}
        if gone:
            self._videos = {k: v for k, v in self._videos.items() if k not in gone}
            self._video_words = {k: v for k, v in self._video_words.items() if k not in gone}
            self._publish()
        return len(gone)

    def video_counts(self) -> dict[str, int]:
        """vPDQ entries per list."""
        return dict(Counter(name for name, _ in self._videos))

    def retract(self, keys: Iterable[tuple[str, str]]) -> int:
        """Remove entries by (list, entry id); unknown keys are ignored. Returns how many."""
        listed = list(keys)
        found = self._store.find([k[0] for k in listed], [k[1] for k in listed])
        rows = np.unique(found[found >= 0])
        if rows.size:
            self._drop(rows)
            for algorithm in PERCEPTUAL_ALGORITHMS:
                self._plan(algorithm)  # a list's last entry gone may lower the radius
        self._publish()
        return int(rows.size)

    def _drop(self, rows: I64Array) -> None:
        """Take live ``rows`` out of their indexes and the counts, and retire them."""
        reader = self._store.reader()
        codes = self._store.algorithm_codes(rows)
        counts = dict(self._counts)
        for row, code in zip(rows.tolist(), codes.tolist(), strict=True):
            key = (reader.list_name(row), ALGORITHMS[code])
            counts[key] -= 1
            if not counts[key]:
                del counts[key]
        self._counts = counts
        self._live -= int(rows.size)
        for code in np.unique(codes).tolist():
            algorithm = ALGORITHMS[code]
            ids = rows[codes == code]
            if self._deferred is not None:
                ids = ids[ids < self._deferred_from]  # the rest are in no index yet
            if not ids.size:
                continue
            self._dirty.add(algorithm)
            if not algorithm.is_perceptual:
                for row in ids.tolist():
                    self._exact[algorithm].discard(row)
                continue
            index = self._hamming[algorithm]
            if isinstance(index, MultiIndexHash256 | BruteForceIndex256):
                index.discard(ids)  # no copy of a 256-bit hash is kept outside its index
            else:
                index.remove(ids, reader.values64[ids])
        self._store.retire(rows)

    def _plan(self, algorithm: Algorithm, extra: int = 0) -> None:
        """Keep ``algorithm``'s index the kind and shape its size (+ ``extra`` about to be
        added) and search radius call for; build a replacement, then swap it in."""
        if self._deferred is not None:
            return  # planned once, by build()
        radius = self._search_radius(algorithm)
        if radius is None:
            return  # nothing searches this index now: keep it until something does
        index = self._hamming[algorithm]
        size = len(index) + extra
        bits = algorithm.bits
        kind = kind_for_width(self._index_kind, bits)
        if kind == "auto":
            kind = choose_index_kind(size, radius, bits)
            if kind == "scan" and index.name == "mih" and mih_ever(radius, bits):
                kind = "mih"  # shrank below the threshold: stay (no flapping)
        if kind != index.name:
            ids, values = index.entries()
            replacement = build_hamming_index(kind, size, radius, bits)
            if ids.size:
                replacement.add(ids, values)
            self._hamming[algorithm] = replacement
            self._dirty.add(algorithm)
        elif isinstance(index, MultiIndexHash | MultiIndexHash256) and index.replan(radius):
            self._dirty.add(algorithm)

    def apply(self, operations: Iterable[Operation | EntriesOperation]) -> None:
        """Apply decoded ``hashlists`` records in order (batched per kind, order preserved);
        publishes once, at the end."""
        pending: list[HashListEntry] = []
        retractions: list[tuple[str, str]] = []

        def flush() -> None:
            if pending:
                self.upsert(pending)
                pending.clear()
            if retractions:
                self.retract(retractions)
                retractions.clear()

        self._holding = True
        try:
            key: object
            for kind, key, value in operations:
                if kind == "list":
                    flush()
                    if value is None:
                        self.remove_list(str(key))
                    else:
                        assert isinstance(value, ListConfig)
                        self.set_list(value)
                elif kind == "entries":
                    flush()
                    assert isinstance(value, EntryBatch)
                    self.upsert_batch(value)
                elif kind == "vpdq":
                    flush()
                    if value is None:
                        self.retract_videos([key])  # type: ignore[list-item]
                    else:
                        assert isinstance(value, VpdqEntry)
                        self.upsert_videos([value])
                elif value is None:
                    if pending:
                        flush()
                    retractions.append(key)  # type: ignore[arg-type]
                else:
                    if retractions:
                        flush()
                    assert isinstance(value, HashListEntry)
                    pending.append(value)
            flush()
        finally:
            self._holding = False
        self._publish()

    # -- building and publishing ----------------------------------------------------------------

    def defer_builds(self) -> None:
        """Until :meth:`build`: store entries, but build no index and publish nothing (a load
        from empty then builds each index once, from everything, instead of once per batch).
        Matches meanwhile read the view published before."""
        if self._deferred is None:
            self._deferred = {}
            self._deferred_from = len(self._store)

    @property
    def deferred(self) -> bool:
        """Whether builds are deferred (:meth:`defer_builds`)."""
        return self._deferred is not None

    def build(self) -> None:
        """Build every index the deferred entries go into (each once), then publish."""
        deferred, self._deferred = self._deferred, None
        if deferred:
            for algorithm, parts in deferred.items():
                ids = np.concatenate([part[0] for part in parts])
                live = self._store.is_live(ids)
                ids = ids[live]
                if algorithm.is_perceptual:
                    values = np.concatenate([part[1] for part in parts])[live]
                    self._plan(algorithm, extra=int(ids.size))
                    if ids.size:
                        self._hamming[algorithm].add(ids, values)
                else:
                    digests = [v for part in parts for v in part[1]]
                    kept = [v for v, keep in zip(digests, live.tolist(), strict=True) if keep]
                    self._exact[algorithm].add_many(ids.tolist(), kept)
                self._dirty.add(algorithm)
            self._store.pack()
        for algorithm in PERCEPTUAL_ALGORITHMS:
            self._plan(algorithm)
        self._publish()

    def _publish(self) -> None:
        if self._deferred is None and not self._holding:
            self._view = self._snapshot()

    def _snapshot(self) -> MatcherView:
        """A new view: indexes changed since the last one are copied for readers (see
        :meth:`pipeline.core.index.base.HammingIndex.snapshot`), the others reused."""
        for algorithm in self._dirty:
            if algorithm.is_perceptual:
                self._snapshots[algorithm] = self._hamming[algorithm].snapshot()
            else:
                self._snapshots[algorithm] = self._exact[algorithm].snapshot()
        self._dirty = set()
        snapshots = self._snapshots
        matched_videos = [
            (key, entry)
            for key, entry in sorted(self._videos.items())
            if (config := self._configs.get(key[0])) is not None and config.enabled
        ]
        return MatcherView(
            configs=self._configs,
            rows=self._store.reader(),
            hamming={
                alg: index
                for alg in PERCEPTUAL_ALGORITHMS
                if isinstance(index := snapshots[alg], HammingIndex)
            },
            exact={
                alg: index
                for alg in EXACT_ALGORITHMS
                if isinstance(index := snapshots[alg], ExactHashSet)
            },
            radii={
                alg: radius
                for alg in PERCEPTUAL_ALGORITHMS
                if (radius := self._search_radius(alg)) is not None
            },
            videos=tuple(entry for _, entry in matched_videos),
            video_words=tuple(self._video_words[key] for key, _ in matched_videos),
        )

    def _search_radius(self, algorithm: Algorithm) -> int | None:
        """The largest threshold of an enabled, configured list with entries of ``algorithm``,
        or None (held entries are not searched for)."""
        lists = {name for name, alg in self._counts if alg is algorithm}
        radii = [
            t
            for name in lists
            if (c := self._configs.get(name)) is not None
            and c.enabled
            and (t := c.threshold(algorithm)) is not None
        ]
        return max(radii) if radii else None

    # -- introspection --------------------------------------------------------------------------

    def entry_counts(self) -> dict[tuple[str, Algorithm], int]:
        """Live entries per (list, algorithm), for the index-size metric."""
        return dict(self._counts)

    def algorithms_in_use(self) -> tuple[Algorithm, ...]:
        """Algorithms with at least one entry: hashing can skip the others (a vPDQ entry
        asks for PDQ: a video's frames are compared by their PDQ hashes)."""
        used = {alg for _, alg in self._counts}
        if self._videos:
            used.add(Algorithm.PDQ)
        return tuple(alg for alg in Algorithm if alg in used)

    def __len__(self) -> int:
        return self._live + len(self._videos)

    def empty_like(self) -> Matcher:
        """A new, empty matcher with this one's index kind (to build a replacement in)."""
        return Matcher(self._index_kind)

    def adopt(self, other: Matcher) -> None:
        """Take ``other``'s lists, entries and indexes in one step, dropping this one's.

        Build-then-swap: a replacement is loaded in the background while this matcher keeps
        serving, and every holder of this object sees the new state from the next match on.
        The state is swapped as one attribute assignment, so no match sees half of each;
        ``other`` must not be used afterwards."""
        self.__dict__ = other.__dict__

    def hamming_index(self, algorithm: Algorithm) -> HammingIndex:
        """The writer's index for ``algorithm`` now (for metrics, benchmarks and tests)."""
        return self._hamming[algorithm]

    @property
    def index_bytes(self) -> int:
        """Bytes held by the indexes (not counting the entry columns: :attr:`store_bytes`)."""
        return sum(i.nbytes for i in self._hamming.values()) + sum(
            s.nbytes for s in self._exact.values()
        )

    @property
    def store_bytes(self) -> int:
        """Bytes held by the entry columns (:class:`pipeline.core.entrystore.EntryStore`)."""
        return self._store.nbytes


def _select(batch: EntryBatch, positions: Sequence[int]) -> EntryBatch:
    """The entries of ``batch`` at ``positions``, in that order."""
    return EntryBatch(
        list_names=[batch.list_names[i] for i in positions],
        entry_ids=[batch.entry_ids[i] for i in positions],
        algorithms=[batch.algorithms[i] for i in positions],
        values=[batch.values[i] for i in positions],
        categories=[batch.categories[i] for i in positions],
    )


def _index_values(algorithm: Algorithm, values: list[int]) -> Any:
    """Hash values as the index of ``algorithm`` takes them (digests stay ints)."""
    if not algorithm.is_perceptual:
        return values
    if algorithm.bits == 64:
        return np.array(values, dtype=np.uint64)
    return as_words(values)
