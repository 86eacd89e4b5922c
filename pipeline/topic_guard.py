"""Whether the worker's topics are still the topics it started writing to, and their repair.

Why this exists: a producer keeps each topic's partitions in its metadata cache. When a topic
is deleted under a running worker (an operator deleting or re-creating it; the embedded test
broker restarted, which loses every topic), the producer keeps sending to the cached
partitions, and a broker may acknowledge those records without storing them: tansu answers a
produce to a topic it does not have with success and offset 0, and a fresh consumer reads
nothing. An acknowledgement alone is therefore no proof that a record is readable.

Owns the proof the output writer asks for before it counts records and lets their upload be
committed (:meth:`TopicGuard.confirm`): after the acknowledgements, a metadata request shows
every output topic exists with the topic id it had when the records were sent. Callers share
requests in rounds (:class:`CheckRounds`): a caller waits for the next round to start, which
is never before it arrived, and rounds start at most once per ``window`` seconds, so under load
every batch acknowledged within one window shares one request (checking per batch cost more of
the worker process's CPU than anything else it does per upload). A topic found
missing or re-created (a new topic id) is repaired: the missing topics are created with the
pipeline's specs, the new ids become the baseline, ``screening_topics_recreated_total`` counts
it, one ERROR line names it (both before the creation is tried, which may be refused, and once
per incident however many checks find it), ``screening_topic_missing`` is 1 and /readyz answers
503 with the reason until the topics are back; and
the records of every write that was in flight (its *epoch* has passed) are sent again. Outputs
are keyed by upload id, so a record sent twice is a duplicate a reader overwrites, never a
loss. :meth:`TopicGuard.watch` runs the same check every few seconds, so the consumed topics
(uploads, hash lists) come back too when no output is being written.

Topic ids need Kafka 2.8 or later; an older broker reports none, and then only a missing topic
is detected. Must not send or read records; blocking client calls run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from pipeline.adapters.topics import TopicSpec
from pipeline.errors import RetryableError
from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics

log = logging.getLogger(__name__)


class TopicsChanged(RetryableError):
    """Topics vanished or were re-created since the records were sent; send them again."""

    reason = "topics_changed"


class Inspector(Protocol):
    """The broker side (:class:`pipeline.adapters.topics.TopicInspector`); blocking calls."""

    def identities(self, names: Collection[str]) -> dict[str, str | None]: ...

    def create_missing(self, specs: list[TopicSpec]) -> list[str]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TopicChange:
    """One topic that is not the one the baseline knows."""

    name: str
    kind: str  # "missing" (gone) or "re-created" (exists with a new topic id)


def topic_changes(
    baseline: Mapping[str, str | None], observed: Mapping[str, str | None]
) -> list[TopicChange]:
    """What differs between the topic ids known (``baseline``) and seen now (``observed``).

    ``None`` is a missing topic; ``""`` an existing topic whose broker reports no id (then only
    its disappearance can be seen). A topic not in the baseline counts only if missing."""
    changes = []
    for name, now in observed.items():
        before = baseline.get(name)
        if now is None:
            changes.append(TopicChange(name, "missing"))
        elif before and now and before != now:
            changes.append(TopicChange(name, "re-created"))
    return changes


class CheckRounds:
    """Which metadata check proves which caller: the pure bookkeeping of :class:`TopicGuard`.

    Checks are numbered rounds started one after the other. A caller arriving now waits for
    round :meth:`join` (the next one to start, so it starts after the caller's acknowledgements
    arrived: an earlier check may have asked the broker before they did) and is proven by that
    round's result. A round starts no sooner than ``window`` seconds after the previous one
    started (:meth:`due`), so every caller arriving meanwhile joins it: one request per window
    under load, none delayed when rounds are rarer than that. ``now`` is any monotonic clock."""

    def __init__(self, window: float) -> None:
        if window < 0:
            raise ValueError("window must be >= 0")
        self._window = window
        #: Rounds started so far: round ``started`` is the last one that asked the broker.
        self.started = 0
        self._last_start: float | None = None

    def join(self) -> int:
        """The round a caller arriving now waits for."""
        return self.started + 1

    def due(self, now: float) -> float:
        """Seconds to wait before the next round may start."""
        if self._last_start is None:
            return 0.0
        return max(0.0, self._last_start + self._window - now)

    def start(self, now: float) -> int:
        """The next round starts now (its request is sent after this); returns its number.
        Callers joining from now on wait for the round after it."""
        self.started += 1
        self._last_start = now
        return self.started


class TopicGuard:
    """The worker's topics, checked against their ids at start; see the module docstring."""

    def __init__(
        self,
        inspector: Inspector,
        specs: list[TopicSpec],
        *,
        health: WorkerHealth,
        metrics: PipelineMetrics,
        kinds: Mapping[str, str],
        window: float = 0.0,
    ) -> None:
        """``specs``: every topic of the worker (all checked at once: one metadata request);
        ``kinds``: topic name -> its fixed kind (``verdicts``, ``uploads``...) for the metric;
        ``window``: seconds between the starts of two checks, at least (see
        :class:`CheckRounds`; it delays a confirmation by at most that)."""
        self._reset_listeners: list[Callable[[frozenset[str]], None]] = []
        self._answer_listeners: list[Callable[[], None]] = []
        self._inspector = inspector
        self._specs = specs
        self._names = [spec.name for spec in specs]
        self._health = health
        self._metrics = metrics
        self._kinds = dict(kinds)
        if unnamed := set(self._names) - set(self._kinds):
            raise ValueError(f"no kind for topics {sorted(unnamed)}")
        self._baseline: dict[str, str | None] = {}
        #: Advances whenever the baseline changes: a write sent under an older epoch is resent.
        self.epoch = 0
        self._lock = asyncio.Lock()
        self._rounds = CheckRounds(window)
        #: The futures of rounds not started yet (at most one: the next), by round number.
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._checks: set[asyncio.Task[None]] = set()  # referenced until done
        self._closed = False
        #: Topics of the current incident, already counted and logged (until all are back).
        self._reported: set[str] = set()
        self._create_failure_logged = False

    def on_reset(self, listener: Callable[[frozenset[str]], None]) -> None:
        """Call ``listener`` with the kinds of the topics found changed, once they exist again
        and before any waiting write is confirmed, so the reader of a consumed topic starts
        over on the new one (its positions belong to the old topic: kept, they would skip the
        new topic's first records). It must return at once."""
        self._reset_listeners.append(listener)

    async def close(self) -> None:
        """Close the broker connection (at shutdown, before an embedded broker stops: left
        open, its client logs the broker going away as errors, and retries, while the worker
        exits). A check still running is cancelled; none may start after this."""
        self._closed = True
        for task in list(self._checks):
            task.cancel()
        await asyncio.to_thread(self._inspector.close)

    def on_answer(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the broker answered a metadata request of a check: broker
        connectivity that does not depend on the hash-list feed's fetches. It must return at
        once."""
        self._answer_listeners.append(listener)

    async def establish(self) -> None:
        """Create the missing topics and take their ids as the baseline (at start). Raises a
        kafka error while the broker does not answer."""
        async with self._lock:
            await asyncio.to_thread(self._inspector.create_missing, self._specs)
            self._baseline = await asyncio.to_thread(self._inspector.identities, self._names)
            self.epoch += 1

    async def confirm(self, epoch: int) -> None:
        """Return once a check started after this call found every topic as it was at
        ``epoch`` (read :attr:`epoch` before sending). Raises :class:`TopicsChanged` when a
        topic vanished or was re-created meanwhile (repaired before it raises: send again), or
        a kafka error while the broker does not answer."""
        if epoch != self.epoch:
            raise TopicsChanged("the topics were re-created while the records were sent")
        await self._shared_check()
        if epoch != self.epoch:
            raise TopicsChanged("the topics were re-created while the records were sent")

    async def watch(self) -> None:
        """One check, as :meth:`confirm` does (a worker's timer calls it every few seconds);
        repairs what it finds, logs broker trouble and returns."""
        try:
            await self._shared_check()
        except TopicsChanged:
            pass  # repaired and logged
        except Exception as exc:  # the broker is away: connectivity reports that
            log.debug("topic check failed (%s)", type(exc).__name__)

    async def _shared_check(self) -> None:
        round_ = self._rounds.join()
        done = self._waiting.get(round_)
        if done is None:
            done = self._waiting[round_] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._run_check(round_, done))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)
        await asyncio.shield(done)

    async def _run_check(self, round_: int, done: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._lock:
                # Callers arriving while this waits join this round.
                await asyncio.sleep(self._rounds.due(loop.time()))
                # Callers arriving from now on wait for the next round: this one may ask the
                # broker before their records were acknowledged.
                started = self._rounds.start(loop.time())
                del self._waiting[round_]
                if started != round_:  # rounds start in order under the lock
                    raise AssertionError(f"round {started} started for round {round_}")
                await self._check_and_repair()
        except BaseException as exc:
            if self._waiting.get(round_) is done:  # never started: later callers start anew
                del self._waiting[round_]
            if not done.done():
                done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not done.done():
                done.set_result(None)
        finally:
            if done.done() and not done.cancelled():
                done.exception()  # retrieved: no "never retrieved" warning without waiters

    async def _check_and_repair(self) -> None:
        if self._closed:  # a request would open a new connection; nothing is proven
            raise RuntimeError("the topic guard is closed: the worker is stopping")
        observed = await asyncio.to_thread(self._inspector.identities, self._names)
        for answered in self._answer_listeners:
            answered()
        self._show_missing(observed)
        changes = topic_changes(self._baseline, observed)
        if not changes:
            if not self._baseline:
                self._baseline = observed
            self._end_incident()
            return
        self.epoch += 1  # whatever was sent before now is resent
        described = ", ".join(f"{c.name} ({c.kind})" for c in changes)
        self._health.topics_problem = (
            f"topics vanished or were re-created on the broker: {described}; re-creating them, "
            "unconfirmed outputs are sent again"
        )
        # Counted and logged before the repair is tried: creating topics may be refused (no
        # rights to create them), and then every later check finds the same topics missing;
        # this incident is named once, not once per check.
        if new := [c for c in changes if c.name not in self._reported]:
            for change in new:
                self._metrics.topic_recreated(self._kinds[change.name])
            self._reported.update(c.name for c in new)
            log.error(
                "Kafka topics vanished or were re-created under this worker: %s; re-creating "
                "them. Outputs not yet confirmed are written again to the new topics",
                ", ".join(f"{c.name} ({c.kind})" for c in new),
            )
        try:
            created = await asyncio.to_thread(self._inspector.create_missing, self._specs)
        except Exception as exc:
            if not self._create_failure_logged:
                self._create_failure_logged = True
                log.error(
                    "Could not re-create the missing Kafka topics (%s: %s): this worker cannot "
                    "write or read them; /readyz answers 503 and screening_topic_missing stays "
                    "1 until they exist. Retrying at every check",
                    type(exc).__name__,
                    exc,
                )
            raise
        self._baseline = await asyncio.to_thread(self._inspector.identities, self._names)
        self._show_missing(self._baseline)
        log.info("re-created Kafka topics: %s", ", ".join(created) or "none (another client had)")
        for listener in self._reset_listeners:
            try:
                listener(frozenset(self._kinds[c.name] for c in changes))
            except Exception:
                log.exception("telling a reader of the changed topics failed")
        if all(v is not None for v in self._baseline.values()):
            self._end_incident()
        raise TopicsChanged(f"topics changed: {described}")

    def _show_missing(self, observed: Mapping[str, str | None]) -> None:
        for name, topic_id in observed.items():
            self._metrics.set_topic_missing(self._kinds[name], topic_id is None)

    def _end_incident(self) -> None:
        """Every topic exists as the baseline knows it: the next change is a new incident."""
        self._health.topics_problem = None
        self._reported.clear()
        self._create_failure_logged = False
