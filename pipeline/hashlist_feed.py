"""Keeps this worker's in-memory indexes in step with the ``hashlists`` topic.

Owns: reading the whole topic from the beginning on every worker (not as a group member: each
worker needs every list entry, not a share of them), tailing it for live additions and
retractions, and deciding when the worker has *caught up*. Catch-up is judged against the high
watermark that Fetch responses carry, never against ListOffsets end offsets, which the embedded
test broker reports short (see shared/BROKER.md); the rule is correct on Apache Kafka as well.
Nothing heavy runs on the event loop: each fetched chunk is decoded (entry records by the bulk
path, :func:`pipeline.adapters.hashlist_topic.fast_entry`, into columns) and applied on the
feed's one worker thread, in order, while the loop keeps Kafka heartbeats, screening and the web
views going; the matcher publishes what readers see as one reference swap. A load from empty
(the first one, and every re-read after a reset) is applied without building any index
(:meth:`pipeline.core.matching.Matcher.defer_builds`) and, once caught up, each index is built
once on that thread (``screening_index_build_seconds``); the worker is ready only after that.
When the topic is reset under the worker (deleted and created again: the high watermark of a
partition falls below the next offset to apply, or the worker's topic check sees a new topic
id), the old positions mean nothing: kept, they would skip the new topic's records below them.
The feed then re-reads the topic from the start into a fresh target (a new, empty matcher)
while the live one keeps serving, reports not ready meanwhile, and swaps the fresh one in once
caught up (build-then-swap), so entries that are not on the new topic stop matching too.
Must not: block the event loop for long, or crash on a bad record (bad records are counted,
logged with their offset and skipped; so is a record the matcher fails to apply).
:meth:`HashListFeed.run` raises on broker trouble (a missing topic, a failed fetch); the worker
supervises it and calls it again, and a new run resumes where the last one stopped applying.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from pipeline.adapters.hashlist_topic import TopicOperation as HashListOperation
from pipeline.adapters.hashlist_topic import fast_entry, parse_hashlist_record, record_kind
from pipeline.core.detail import low_information_hashes
from pipeline.core.entrystore import EntryBatch
from pipeline.core.hashlist import Category, HashListEntry
from pipeline.core.matching import EntriesOperation, Matcher
from pipeline.core.matching import Operation as MatcherOperation
from pipeline.core.types import Algorithm
from pipeline.errors import InputRejected, RetryableError
from pipeline.health import WorkerHealth
from pipeline.memory import glibc_malloc_trim
from pipeline.metrics import PipelineMetrics
from pipeline.quarantines import WorkerQuarantine

log = logging.getLogger(__name__)

#: While a job (an apply, an index build) runs, fetch responses are handed on this often.
REPORT_WHILE_BUSY_SECONDS = 0.5


#: What the feed hands its target: decoded records, with runs of entries as one batch.
FeedOperation = HashListOperation | EntriesOperation


class ListUpdateTarget(Protocol):
    """Where decoded hash-list operations go (the matcher, in the worker). Every method but
    :meth:`after_apply` runs on the feed's worker thread, one call at a time."""

    def apply(self, operations: list[FeedOperation]) -> None: ...

    def outcomes(self, operation: FeedOperation) -> Mapping[str, int]:
        """How the records of an applied operation are counted: ``applied``, or ``held`` for
        an entry stored but not matched (its list has no config after the chunk it came in)."""
        ...

    def defer_builds(self) -> None:
        """A load from empty begins: store updates, build nothing until :meth:`build`."""
        ...

    def build(self) -> None:
        """Build what the deferred load left unbuilt, and publish it to readers."""
        ...

    def after_apply(self) -> None:
        """On the event loop, after each applied chunk: what must not run on another thread."""
        ...

    def fresh(self) -> ListUpdateTarget:
        """An empty target of the same kind, to rebuild the whole state in."""
        ...

    def adopt(self, other: ListUpdateTarget) -> None:
        """Take ``other``'s state in one step (build-then-swap)."""
        ...


class FeedMetrics(Protocol):
    def list_update(self, operation: str, outcome: str, count: int = 1) -> None: ...

    def list_updated_at(self, timestamp_seconds: float) -> None: ...

    def list_reset(self) -> None: ...

    def index_built(self, seconds: float) -> None: ...


class HashListFeed:
    """Reads ``topic`` from offset 0 on all partitions, applies it, and keeps tailing."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        target: ListUpdateTarget,
        health: WorkerHealth,
        metrics: FeedMetrics,
        chunk_records: int = 20_000,
        on_caught_up: Callable[[], None] | None = None,
        on_running: Callable[[], None] | None = None,
        fetch_max_wait_ms: int | None = None,
        topic_wait_seconds: float = 10.0,
        on_fetch_response: Callable[[float], None] | None = None,
    ) -> None:
        self._topic = topic
        self._target = target
        self._health = health
        self._metrics = metrics
        self._chunk = chunk_records
        self._on_caught_up = on_caught_up
        self._bootstrap_servers = bootstrap_servers
        self._fetch_max_wait_ms = fetch_max_wait_ms or 500  # aiokafka's default
        self._on_running = on_running
        self._topic_wait_seconds = topic_wait_seconds
        #: Called with the Unix time of each newer fetch response (broker connectivity).
        self._on_fetch_response = on_fetch_response
        self._newest_fetch_response_ms = 0
        self._consumer: AIOKafkaConsumer
        self._stopping = asyncio.Event()
        #: Next offset to apply per partition, kept across runs so a restart resumes there.
        self._next: dict[TopicPartition, int] = {}
        self.records_applied = 0
        #: While the topic is re-read after a reset: the target it is loaded into (swapped in
        #: for the live one once caught up), and why.
        self._rebuild: ListUpdateTarget | None = None
        self._reset_requested: str | None = None
        #: The one thread that decodes, applies and builds (in order: one at a time).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hashlist-feed")
        self._trim = glibc_malloc_trim()
        self._loading = False

    async def run(self) -> None:
        """Apply the topic until :meth:`stop`; marks ``health.lists_caught_up`` once caught up.

        Raises on broker trouble; calling it again resumes after the last applied record.
        """
        self._consumer = AIOKafkaConsumer(  # aiokafka binds to the running loop
            bootstrap_servers=self._bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        try:
            await self._consumer.start()
            partitions = await self._partitions()
            self._consumer.assign(partitions)
            fresh = [tp for tp in partitions if tp not in self._next]
            if fresh:
                await self._consumer.seek_to_beginning(*fresh)
            for tp in partitions:
                if tp in self._next:
                    self._consumer.seek(tp, self._next[tp])
            log.info("reading hash lists from %r (%d partitions)", self._topic, len(partitions))
            if not self._health.lists_caught_up and not self._loading:
                await self._on_worker(self._target.defer_builds)
                self._loading = True
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self._chunk)
                if self._on_running is not None:
                    self._on_running()
                self._report_fetch_responses(partitions)
                reset = self._reset_requested or self._watermark_below_position(partitions)
                if reset is not None:
                    await self._start_rebuild(partitions, reset)
                    continue  # the batch belongs to the old positions: read it again
                records = [record for part in batches.values() for record in part]
                if records:
                    target = self._rebuild or self._target
                    await self._on_worker(self._decode_and_apply, target, records)
                    target.after_apply()
                    self._metrics.list_updated_at(max(r.timestamp for r in records) / 1000)
                for tp, part in batches.items():
                    if part:
                        self._next[tp] = part[-1].offset + 1
                if not self._health.lists_caught_up and await self._caught_up(partitions):
                    # One build of everything loaded (also when the topic was empty), then
                    # ready: a query never searches a half-loaded list.
                    await self._on_worker(self._build, self._rebuild or self._target)
                    self._loading = False
                    if self._rebuild is not None:
                        self._target.adopt(self._rebuild)
                        self._rebuild = None
                        self._health.details.pop("hashlists", None)
                        log.warning(
                            "hash lists re-read from %r: %d records applied, swapped in",
                            self._topic,
                            self.records_applied,
                        )
                    else:
                        log.info("hash lists loaded: %d records applied", self.records_applied)
                    self._health.lists_caught_up = True
                    if self._on_caught_up is not None:
                        self._on_caught_up()
        finally:
            await self._consumer.stop()

    async def _on_worker(self, function: Callable[..., None], *args: Any) -> None:
        """Run ``function(*args)`` on the feed's worker thread; the loop runs meanwhile.

        So does the consumer's background fetching (an idle partition keeps being fetched),
        and its responses are handed on every :data:`REPORT_WHILE_BUSY_SECONDS` while the job
        runs: an index build takes 5-11 s at 10M entries, and reporting only between jobs made
        a long build on an idle worker look like a broker outage (/readyz 503, the log, a page).
        """
        job = asyncio.get_running_loop().run_in_executor(self._worker, function, *args)
        try:
            while True:
                done, _ = await asyncio.wait({job}, timeout=REPORT_WHILE_BUSY_SECONDS)
                if done:
                    job.result()
                    return
                self._report_fetch_responses(list(self._consumer.assignment()))
        except asyncio.CancelledError:
            job.cancel()
            raise

    def _build(self, target: ListUpdateTarget) -> None:
        started = time.perf_counter()
        target.build()
        seconds = time.perf_counter() - started
        self._metrics.index_built(seconds)
        log.info("hash-list indexes built in %.2f s", seconds)
        # A load leaves the C heaps holding what its chunks, staging arrays and the build
        # freed (below glibc's mmap threshold, so kept): give it back, or the resident size
        # stays ~2x what the lists hold.
        if self._trim is not None:
            self._trim()

    def _decode_and_apply(
        self, target: ListUpdateTarget, records: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        """Decode a chunk (runs of entries into columns) and apply it: on the worker thread."""
        operations: list[tuple[FeedOperation, list[ConsumerRecord[bytes, bytes]]]] = []
        names: list[str] = []
        ids: list[str] = []
        algorithms: list[Algorithm] = []
        values: list[int] = []
        categories: list[Category] = []
        run: list[ConsumerRecord[bytes, bytes]] = []

        def end_run() -> None:
            if run:
                batch = EntryBatch(names[:], ids[:], algorithms[:], values[:], categories[:])
                operations.append((("entries", None, batch), run[:]))
                for column in (names, ids, algorithms, values, categories, run):
                    column.clear()

        for record in records:
            entry = fast_entry(record.key, record.value)
            if entry is not None:
                names.append(entry[0])
                ids.append(entry[1])
                algorithms.append(entry[2])
                values.append(entry[3])
                categories.append(entry[4])
                run.append(record)
                continue
            operation = self._decode(record)
            if operation is not None:
                end_run()
                operations.append((operation, [record]))
        end_run()
        if operations:
            self._apply(target, operations)

    def topic_reset(self, reason: str) -> None:
        """The topic was re-created (a new topic id, seen by the worker's topic check): re-read
        it from the start into a fresh index at the next poll."""
        self._reset_requested = reason

    def _watermark_below_position(self, partitions: list[TopicPartition]) -> str | None:
        """Why the topic must have been reset, or None: a partition's high watermark (from the
        last fetch response) below the next offset this feed would apply. Offsets only grow on
        one topic, so the topic was deleted and created again (or truncated), and the records
        now below the old position would be skipped."""
        for tp in partitions:
            high = self._consumer.highwater(tp)
            if high is not None and high < self._next.get(tp, 0):
                return (
                    f"partition {tp.partition} ends at offset {high}, below the next offset "
                    f"to apply ({self._next[tp]})"
                )
        return None

    async def _start_rebuild(self, partitions: list[TopicPartition], reason: str) -> None:
        """Re-read the whole topic into a fresh target while the live one keeps serving;
        not ready meanwhile (its lists are not those of the topic any more)."""
        self._reset_requested = None
        self._rebuild = self._target.fresh()
        await self._on_worker(self._rebuild.defer_builds)
        self._loading = True
        self._next = {}
        self.records_applied = 0
        self._health.lists_caught_up = False
        self._health.details["hashlists"] = f"re-reading topic {self._topic!r}: {reason}"
        self._metrics.list_reset()
        log.error(
            "hash-list topic %r was reset (%s): re-reading it from the start into a fresh "
            "index; /readyz answers 503 until it is loaded",
            self._topic,
            reason,
        )
        await self._consumer.seek_to_beginning(*partitions)

    def _report_fetch_responses(self, partitions: list[TopicPartition]) -> None:
        """Hand on the time of the newest fetch response, if newer than the last one handed on.

        aiokafka's public ``last_poll_timestamp`` is set by every fetch response without error,
        empty ones included, so this advances on an idle topic while the broker answers and
        stops while it does not (``getmany`` returns empty either way)."""
        if self._on_fetch_response is None:
            return
        newest = max((self._consumer.last_poll_timestamp(tp) or 0 for tp in partitions), default=0)
        if newest > self._newest_fetch_response_ms:
            self._newest_fetch_response_ms = newest
            self._on_fetch_response(newest / 1000)

    def _apply(
        self,
        target: ListUpdateTarget,
        operations: list[tuple[FeedOperation, list[ConsumerRecord[bytes, bytes]]]],
    ) -> None:
        """Apply a chunk; if the target fails on it, apply record by record and skip (count and
        log) the ones it fails on, so one bad record cannot stop the feed for good."""
        try:
            target.apply([operation for operation, _ in operations])
        except Exception:
            log.exception("applying %d hash-list operations failed; one by one", len(operations))
            for operation, records in operations:
                for single, record in _one_by_one(operation, records):
                    try:
                        target.apply([single])
                    except Exception as exc:
                        self._metrics.list_update(record_kind(record.key), "rejected_apply_failed")
                        log.error(
                            "skipping hash-list record at %s[%d]@%d: applying it failed (%s)",
                            record.topic,
                            record.partition,
                            record.offset,
                            type(exc).__name__,
                        )
                    else:
                        self._count_applied(target, single)
            return
        for operation, _ in operations:
            self._count_applied(target, operation)

    def _count_applied(self, target: ListUpdateTarget, operation: FeedOperation) -> None:
        kind = "entry" if operation[0] == "entries" else operation[0]
        for outcome, count in target.outcomes(operation).items():
            self.records_applied += count
            self._metrics.list_update(kind, outcome, count)

    async def stop(self) -> None:
        self._stopping.set()

    async def _partitions(self) -> list[TopicPartition]:
        deadline = asyncio.get_running_loop().time() + self._topic_wait_seconds
        while True:
            await self._consumer.topics()  # refreshes metadata
            found = self._consumer.partitions_for_topic(self._topic)
            if found:
                return [TopicPartition(self._topic, p) for p in sorted(found)]
            if asyncio.get_running_loop().time() >= deadline:
                raise RetryableError(
                    f"hash-list topic {self._topic!r} does not exist", reason="no_topic"
                )
            await asyncio.sleep(0.1)

    async def _caught_up(self, partitions: list[TopicPartition]) -> bool:
        for tp in partitions:
            high = self._consumer.highwater(tp)
            if high is None or await self._consumer.position(tp) < high:
                return False
        return True

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> HashListOperation | None:
        try:
            return parse_hashlist_record(record.key, record.value)
        except (InputRejected, ValueError) as exc:
            self._metrics.list_update(record_kind(record.key), "rejected")
            log.warning(
                "skipping bad hash-list record at %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return None


def _one_by_one(
    operation: FeedOperation, records: list[ConsumerRecord[bytes, bytes]]
) -> list[tuple[FeedOperation, ConsumerRecord[bytes, bytes]]]:
    """``operation`` as one operation per record (a batch of entries split up)."""
    if operation[0] != "entries":
        return [(operation, records[0])]
    batch = operation[2]
    assert isinstance(batch, EntryBatch)
    return [
        (
            (
                "entries",
                None,
                EntryBatch(
                    [batch.list_names[i]],
                    [batch.entry_ids[i]],
                    [batch.algorithms[i]],
                    [batch.values[i]],
                    [batch.categories[i]],
                ),
            ),
            record,
        )
        for i, record in enumerate(records)
    ]


class MatcherTarget:
    """Applies hash-list operations to the matcher and keeps the index metrics current; with a
    ``quarantine``, hands it operators' lifts and re-arms, and the entries retracted.

    Entries of a list with no config are held by the matcher (stored, never matched: see
    :mod:`pipeline.core.matching`). They are counted per list in
    ``screening_hashlist_held_entries``, shown in ``/readyz`` as ``held_entries`` (with a
    ``health``), and logged: a warning when a list starts holding entries, and a line when its
    config arrives and they match.

    Also flags, as they are applied, the entries whose perceptual hash is the hash of a
    low-information picture (:func:`pipeline.core.detail.low_information_hashes`: blank,
    gradient, vignette, stripes): each is logged once as a warning naming its list and entry id,
    and ``screening_hashlist_low_information_entries`` counts those loaded now. Flagged entries
    are still applied and still match (the README's "Low-information pictures" says why); an
    upload that is itself low-information is refused perceptual matching by the hashing side.
    """

    #: Warnings logged per applied chunk; past it, one line says how many more were flagged (a
    #: list of a million blank hashes must not flood the log).
    LOG_LIMIT = 20

    def __init__(
        self,
        matcher: Matcher,
        metrics: PipelineMetrics,
        quarantine: WorkerQuarantine | None = None,
        health: WorkerHealth | None = None,
    ) -> None:
        self._matcher = matcher
        self._metrics = metrics
        self._quarantine = quarantine
        self._health = health
        self._held: dict[str, int] = {}
        self._known_lists: set[str] = set()
        #: (list, entry id) -> algorithm of every loaded entry flagged low-information.
        self._low_information: dict[tuple[str, str], Algorithm] = {}
        #: Quarantine lifts, re-arms and retracted keys, for the event loop (:meth:`after_apply`):
        #: the quarantine is the screening path's, which runs there.
        self._for_loop: list[tuple[str, tuple[str, str], Any]] = []

    def fresh(self) -> MatcherTarget:
        """A target on an empty matcher of the same index kind (same metrics, quarantine; the
        worker's health shows the held entries of the live one until the swap)."""
        return MatcherTarget(self._matcher.empty_like(), self._metrics, self._quarantine)

    def adopt(self, other: ListUpdateTarget) -> None:
        """Serve ``other``'s lists from now on: the live matcher takes its state in one step
        (every holder of the matcher sees it), and the metrics follow."""
        if not isinstance(other, MatcherTarget):
            raise TypeError(f"cannot adopt {type(other).__name__}")
        self._matcher.adopt(other._matcher)
        self._low_information = other._low_information
        self._known_lists |= other._known_lists  # dropped lists stay as zero series
        self._metrics.set_index_entries(
            self._matcher.entry_counts(), self._known_lists, self._matcher.video_counts()
        )
        self._metrics.set_low_information_entries(
            Counter((name, alg) for (name, _), alg in self._low_information.items()),
            self._known_lists,
        )
        self._report_held(self._matcher.held_counts())

    def defer_builds(self) -> None:
        self._matcher.defer_builds()

    def build(self) -> None:
        self._matcher.build()

    def after_apply(self) -> None:
        work, self._for_loop = self._for_loop, []
        if self._quarantine is None:
            return
        for kind, key, value in work:
            if kind == "quarantine":
                self._quarantine.apply(key, value)
            else:
                self._quarantine.retracted(key)

    def apply(self, operations: list[Any]) -> None:
        matcher_operations: list[MatcherOperation | EntriesOperation] = []
        for operation in operations:
            if operation[0] == "quarantine":
                self._for_loop.append(operation)
                continue
            matcher_operations.append(operation)
        self._matcher.apply(matcher_operations)
        for operation in matcher_operations:
            key: object = operation[1]
            retraction = operation[0] in ("entry", "vpdq") and operation[2] is None
            if retraction and isinstance(key, tuple):
                self._for_loop.append(("retracted", key, None))  # a retraction
        self._flag_low_information(matcher_operations)
        lists = set(self._matcher.lists)
        for name in lists - self._known_lists:
            self._metrics.register_list(name)
        self._known_lists |= lists
        self._metrics.set_index_entries(
            self._matcher.entry_counts(), self._known_lists, self._matcher.video_counts()
        )
        self._metrics.set_low_information_entries(
            Counter((name, alg) for (name, _), alg in self._low_information.items()),
            self._known_lists,
        )
        self._report_held(self._matcher.held_counts())

    def outcome(self, operation: HashListOperation) -> str:
        """``held`` for an entry whose list has no config now, else ``applied``."""
        kind, key, value = operation
        if kind in ("entry", "vpdq") and value is not None and isinstance(key, tuple):
            return "held" if self._matcher.config(key[0]) is None else "applied"
        return "applied"

    def outcomes(self, operation: FeedOperation) -> Mapping[str, int]:
        """:meth:`outcome` of each record an operation carries (a batch: one per entry)."""
        if operation[0] != "entries":
            return {self.outcome(operation): 1}
        batch = operation[2]
        assert isinstance(batch, EntryBatch)
        counts: Counter[str] = Counter()
        for name, count in Counter(batch.list_names).items():
            counts["held" if self._matcher.config(name) is None else "applied"] += count
        return counts

    def _report_held(self, held: dict[str, int]) -> None:
        """Publish held entries per list, and log each list that starts or stops holding."""
        for name in sorted(held.keys() - self._held.keys()):
            log.warning(
                "hash list %r: %d entries held, not matched: the topic has no config for the "
                "list (key list/%s); they match once one is published",
                name,
                held[name],
                name,
            )
        for name in sorted(self._held.keys() - held.keys()):
            if self._matcher.config(name) is not None:
                log.info("hash list %r: its config arrived; its held entries now match", name)
        self._held = held
        self._metrics.set_held_entries(held, self._known_lists)
        if self._health is not None:
            self._health.held_entries = dict(held)

    @property
    def held_entries(self) -> dict[str, int]:
        """Entries held per list, as of the last chunk applied."""
        return dict(self._held)

    def _flag_low_information(self, operations: list[MatcherOperation | EntriesOperation]) -> None:
        """Track the flagged entries among ``operations`` (applied in order) and log new ones."""
        # (list, entry id) -> (algorithm, value), or None for a retraction: the last word.
        latest: dict[tuple[str, str], tuple[Algorithm, int] | None] = {}
        for operation in operations:
            kind, key, value = operation[0], operation[1], operation[2]
            if kind == "entry" and isinstance(key, tuple):
                entry = value if isinstance(value, HashListEntry) else None
                latest[key] = None if entry is None else (entry.hash.algorithm, entry.hash.value)
            elif kind == "entries" and isinstance(value, EntryBatch):
                forget = self._low_information.pop if self._low_information else None
                for name_id in zip(value.list_names, value.entry_ids, strict=True):
                    latest.pop(name_id, None)  # the batch has the last word on what it names
                    if forget is not None:
                        forget(name_id, None)
                by_batch = self._flagged(value)
                self._low_information.update({k: found[0] for k, found in by_batch.items()})
                self._log_flagged(list(by_batch.items()))
        by_algorithm: dict[Algorithm, list[tuple[tuple[str, str], int]]] = {}
        for key, found in latest.items():
            self._low_information.pop(key, None)
            if found is not None and found[0].is_perceptual:
                by_algorithm.setdefault(found[0], []).append((key, found[1]))
        flagged: list[tuple[tuple[str, str], tuple[Algorithm, int]]] = [
            (key, (algorithm, value))
            for algorithm, pairs in by_algorithm.items()
            for (key, value), low in zip(
                pairs, low_information_hashes(algorithm, [v for _, v in pairs]), strict=True
            )
            if low
        ]
        for key, (algorithm, _) in flagged:
            self._low_information[key] = algorithm
        self._log_flagged(flagged)

    @staticmethod
    def _flagged(batch: EntryBatch) -> dict[tuple[str, str], tuple[Algorithm, int]]:
        """The low-information entries of a batch (computed per algorithm, vectorised)."""
        positions: dict[Algorithm, list[int]] = {}
        kinds = set(batch.algorithms)
        if len(kinds) == 1:  # the usual batch: one list, one algorithm
            positions[kinds.pop()] = list(range(len(batch)))
        else:
            for i, algorithm in enumerate(batch.algorithms):
                positions.setdefault(algorithm, []).append(i)
        found: dict[tuple[str, str], tuple[Algorithm, int]] = {}
        for algorithm, chosen in positions.items():
            if not algorithm.is_perceptual:
                continue
            values = (
                batch.values if len(chosen) == len(batch) else [batch.values[i] for i in chosen]
            )
            low = low_information_hashes(algorithm, values)
            for i in np.flatnonzero(low).tolist():
                at = chosen[i]
                found[(batch.list_names[at], batch.entry_ids[at])] = (algorithm, batch.values[at])
        return found

    def _log_flagged(self, flagged: Any) -> None:
        """Log up to :data:`LOG_LIMIT` flagged entries: ((list, entry id), (algorithm, value))."""
        for (list_name, entry_id), (algorithm, value) in flagged[: self.LOG_LIMIT]:
            log.warning(
                "hash list %r entry %r: its %s hash %s is the hash of a low-information picture "
                "(blank, gradient, vignette or stripes); uploads like that are not matched "
                "perceptually, so check the entry with the list's owner",
                list_name,
                entry_id,
                algorithm,
                format(value, f"0{algorithm.hex_digits}x"),
            )
        if len(flagged) > self.LOG_LIMIT:
            log.warning(
                "%d more low-information hash-list entries in this update (not logged one by one)",
                len(flagged) - self.LOG_LIMIT,
            )

    @property
    def low_information_entries(self) -> frozenset[tuple[str, str]]:
        """(list, entry id) of the loaded entries flagged low-information."""
        return frozenset(self._low_information)
