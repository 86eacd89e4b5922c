"""The proof the output writer asks for before it counts records (issue 12, item 1).

The broker side is an in-memory catalogue of topics with ids that the test deletes and
re-creates, standing in for the metadata requests of
:class:`pipeline.adapters.topics.TopicInspector` (exercised against a real broker by
tests/integration/test_vanished_topics.py).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Collection

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.adapters.topics import TopicSpec
from pipeline.connectivity import BrokerConnectivity
from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics
from pipeline.topic_guard import (
    CheckRounds,
    TopicChange,
    TopicGuard,
    TopicsChanged,
    topic_changes,
)

KINDS = {"uploads": "uploads", "verdicts": "verdicts", "hashlists": "hashlists"}
SPECS = [TopicSpec(name, 2) for name in KINDS]


class Catalogue:
    """Topics by name with their ids; counts the metadata requests."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.topics: dict[str, str] = {}
        self.requests = 0
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def identities(self, names: Collection[str]) -> dict[str, str | None]:
        self.requests += 1
        return {name: self.topics.get(name) for name in names}

    def create_missing(self, specs: list[TopicSpec]) -> list[str]:
        missing = [s.name for s in specs if s.name not in self.topics]
        for name in missing:
            self.topics[name] = f"id-{next(self._ids)}"
        return missing


def make_guard(
    catalogue: Catalogue, window: float = 0.0
) -> tuple[TopicGuard, WorkerHealth, PipelineMetrics]:
    health, metrics = WorkerHealth(), PipelineMetrics()
    return (
        TopicGuard(catalogue, SPECS, health=health, metrics=metrics, kinds=KINDS, window=window),
        health,
        metrics,
    )


def recreated(metrics: PipelineMetrics, kind: str) -> float:
    value = metrics.registry.get_sample_value("screening_topics_recreated_total", {"topic": kind})
    return value or 0.0


def test_changes_name_missing_and_recreated_topics() -> None:
    baseline = {"a": "1", "b": "2", "c": "3", "old-broker": ""}
    observed = {"a": "1", "b": None, "c": "9", "old-broker": ""}
    assert topic_changes(baseline, observed) == [
        TopicChange("b", "missing"),
        TopicChange("c", "re-created"),
    ]
    assert topic_changes(baseline, baseline) == []


def test_unchanged_topics_confirm_and_concurrent_writes_share_one_request() -> None:
    catalogue = Catalogue()
    guard, health, _ = make_guard(catalogue)

    async def scenario() -> None:
        await guard.establish()
        requests = catalogue.requests
        epoch = guard.epoch
        await asyncio.gather(*(guard.confirm(epoch) for _ in range(50)))
        assert catalogue.requests - requests <= 2  # not one per write

    asyncio.run(scenario())
    assert health.topics_problem is None


def test_close_closes_the_connection_and_no_check_asks_the_broker_after_it() -> None:
    # At shutdown: an admin client left open logs an embedded broker's stop as errors.
    catalogue = Catalogue()
    guard, _, _ = make_guard(catalogue)

    async def scenario() -> None:
        await guard.establish()
        await guard.close()
        requests = catalogue.requests
        await guard.watch()
        assert catalogue.requests == requests

    asyncio.run(scenario())
    assert catalogue.closed


def test_a_vanished_topic_fails_the_write_is_recreated_and_the_retry_confirms() -> None:
    catalogue = Catalogue()
    guard, health, metrics = make_guard(catalogue)

    async def scenario() -> None:
        await guard.establish()
        epoch = guard.epoch  # the write is sent now...
        del catalogue.topics["verdicts"]  # ...to a topic that vanished (broker acked anyway)
        with pytest.raises(TopicsChanged):
            await guard.confirm(epoch)
        assert "verdicts" in catalogue.topics  # re-created before the retry
        await guard.confirm(guard.epoch)  # the retry, sent to the new topic

    asyncio.run(scenario())
    assert recreated(metrics, "verdicts") == 1
    assert recreated(metrics, "uploads") == 0
    assert health.topics_problem is None  # repaired


def test_a_write_in_flight_across_a_repair_is_sent_again_even_if_the_check_passes() -> None:
    """The write was acknowledged into the void; another check repaired the topic meanwhile
    (another worker, or the periodic check): the topic exists now, yet the write must go
    again."""
    catalogue = Catalogue()
    guard, _, _ = make_guard(catalogue)

    async def scenario() -> None:
        await guard.establish()
        epoch = guard.epoch
        catalogue.topics["verdicts"] = "id-other-worker"  # re-created by someone else
        await guard.watch()  # the periodic check sees and adopts it
        with pytest.raises(TopicsChanged):
            await guard.confirm(epoch)

    asyncio.run(scenario())


def test_a_broker_that_does_not_answer_fails_the_confirmation() -> None:
    catalogue = Catalogue()
    guard, _, _ = make_guard(catalogue)

    def unreachable(names: Collection[str]) -> dict[str, str | None]:
        raise ConnectionError("no broker")

    async def scenario() -> None:
        await guard.establish()
        catalogue.identities = unreachable  # type: ignore[method-assign]
        with pytest.raises(ConnectionError):
            await guard.confirm(guard.epoch)
        await guard.watch()  # the periodic check logs and returns

    asyncio.run(scenario())


def test_each_answered_check_counts_as_broker_contact_and_a_failed_one_does_not() -> None:
    """The topic check's metadata requests keep the broker reachable beside the hash-list
    feed's fetches (which pause while an index is built)."""
    catalogue = Catalogue()
    guard, _, _ = make_guard(catalogue)
    clock = [1000.0]
    connectivity = BrokerConnectivity(unreachable_after_seconds=15, clock=lambda: clock[0])
    guard.on_answer(connectivity.answered)
    answered = catalogue.identities

    def unreachable(names: Collection[str]) -> dict[str, str | None]:
        raise ConnectionError("no broker")

    async def scenario() -> None:
        await guard.establish()
        for _ in range(6):  # a minute of checks, no fetch response at all
            clock[0] += 10
            await guard.watch()
            assert connectivity.reachable
        catalogue.identities = unreachable  # type: ignore[method-assign]
        clock[0] += 10
        await guard.watch()
        clock[0] += 10
        await guard.watch()
        assert not connectivity.reachable
        catalogue.identities = answered  # type: ignore[method-assign]
        await guard.watch()
        assert connectivity.reachable

    asyncio.run(scenario())


def test_readiness_says_why_while_a_topic_cannot_be_recreated() -> None:
    catalogue = Catalogue()
    guard, health, _ = make_guard(catalogue)

    def refuse(specs: list[TopicSpec]) -> list[str]:
        raise PermissionError("not authorised to create topics")

    async def scenario() -> None:
        await guard.establish()
        del catalogue.topics["uploads"]
        catalogue.create_missing = refuse  # type: ignore[method-assign]
        await guard.watch()

    asyncio.run(scenario())
    assert health.topics_problem is not None
    assert "uploads (missing)" in health.topics_problem
    health.lists_caught_up = health.screening_started = True
    assert not health.ready
    assert health.report()["topics_problem"] == health.topics_problem


def missing(metrics: PipelineMetrics, kind: str) -> float | None:
    return metrics.registry.get_sample_value("screening_topic_missing", {"topic": kind})


def test_a_topic_that_cannot_be_recreated_is_counted_logged_once_and_shown_until_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Creating topics may be refused (no rights); the incident must still be named: counted,
    one ERROR line per incident (not per check), the gauge at 1 until the topic is back."""
    catalogue = Catalogue()
    guard, health, metrics = make_guard(catalogue)
    create = catalogue.create_missing

    def refuse(specs: list[TopicSpec]) -> list[str]:
        raise PermissionError("not authorised to create topics")

    async def scenario() -> None:
        await guard.establish()
        assert missing(metrics, "uploads") == 0.0
        del catalogue.topics["uploads"]
        catalogue.create_missing = refuse  # type: ignore[method-assign]
        for _ in range(3):
            await guard.watch()
        assert missing(metrics, "uploads") == 1.0
        assert missing(metrics, "verdicts") == 0.0
        assert recreated(metrics, "uploads") == 1.0
        assert health.topics_problem is not None
        catalogue.create_missing = create  # type: ignore[method-assign]
        await guard.watch()
        assert missing(metrics, "uploads") == 0.0
        assert health.topics_problem is None
        await guard.watch()
        del catalogue.topics["uploads"]  # a new incident
        await guard.watch()
        assert recreated(metrics, "uploads") == 2.0

    with caplog.at_level("INFO", logger="pipeline.topic_guard"):
        asyncio.run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    vanished = [m for m in errors if m.startswith("Kafka topics vanished")]
    assert len(vanished) == 2, errors
    assert "uploads (missing)" in vanished[0]
    refused = [m for m in errors if m.startswith("Could not re-create")]
    assert len(refused) == 1, errors
    assert "PermissionError" in refused[0]


@given(
    window=st.sampled_from([0.0, 0.02, 1.0]),
    steps=st.lists(
        st.tuples(st.sampled_from(["arrive", "start", "finish"]), st.floats(0, 0.05)),
        max_size=60,
    ),
)
def test_a_caller_is_proven_only_by_a_round_started_after_it_arrived(
    window: float, steps: list[tuple[str, float]]
) -> None:
    """Against brute force: every caller, arriving at any point of any schedule of rounds
    (one in flight at a time, each started once :meth:`CheckRounds.due` allows), is proven by
    the first round to start after its arrival, and rounds start ``window`` apart at least."""
    rounds = CheckRounds(window)
    now = 0.0
    in_flight: int | None = None
    arrivals: list[tuple[int, int]] = []  # (arrival order, round joined)
    starts: dict[int, tuple[int, float]] = {}  # round -> (order, time)
    for order, (step, elapsed) in enumerate(steps):
        now += elapsed
        if step == "arrive":
            arrivals.append((order, rounds.join()))
        elif step == "start" and in_flight is None:
            now += rounds.due(now)
            in_flight = rounds.start(now)
            starts[in_flight] = (order, now)
        elif step == "finish":
            in_flight = None
    times = [starts[r][1] for r in sorted(starts)]
    assert all(b - a >= window - 1e-9 for a, b in itertools.pairwise(times))
    for arrived, joined in arrivals:
        later = [r for r, (order, _) in starts.items() if order > arrived]
        if joined in starts:
            assert joined == min(later)  # the first round to start after the caller arrived
        else:
            assert not later  # its round has not started yet: it is not proven yet


def test_a_write_acknowledged_while_a_check_is_asking_waits_for_the_next_check() -> None:
    """The check in flight may have read the metadata before the topic vanished and the
    write's acknowledgement arrived: it must not prove that write."""
    catalogue = Catalogue()
    guard, _, _ = make_guard(catalogue)
    asked, answer = threading.Event(), threading.Event()
    identities = catalogue.identities

    def slow_identities(names: Collection[str]) -> dict[str, str | None]:
        observed = identities(names)  # read now...
        asked.set()
        answer.wait(10)  # ...answered later
        return observed

    async def scenario() -> None:
        await guard.establish()
        catalogue.identities = slow_identities  # type: ignore[method-assign]
        first = asyncio.create_task(guard.confirm(guard.epoch))
        while not asked.is_set():
            await asyncio.sleep(0.001)
        epoch = guard.epoch  # the second write is sent now...
        del catalogue.topics["verdicts"]  # ...to a topic that vanished (acked anyway)
        second = asyncio.create_task(guard.confirm(epoch))
        await asyncio.sleep(0.01)
        answer.set()
        await first  # the metadata it read was from before
        with pytest.raises(TopicsChanged):
            await second

    asyncio.run(scenario())


def test_writes_acknowledged_within_the_window_share_one_request() -> None:
    catalogue = Catalogue()
    guard, _, _ = make_guard(catalogue, window=0.2)

    async def write_after(seconds: float) -> None:
        await asyncio.sleep(seconds)
        await guard.confirm(guard.epoch)

    async def scenario() -> None:
        await guard.establish()
        requests = catalogue.requests
        await asyncio.gather(*(write_after(i * 0.005) for i in range(20)))
        assert catalogue.requests - requests <= 3  # without the window: one per write

    asyncio.run(scenario())
