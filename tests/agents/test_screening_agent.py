"""The screening agent's flow, driven directly (no Faust): a real Screener (in-process hashing,
a real Fetcher against a real loopback HTTP server) and a recording ``send`` in place of the
producer. One slow URL must not hold the verdicts around it; acknowledgements come in offset
order per partition and never pass an unfinished upload; the uncommitted bound holds.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.adapters.fetch import Fetcher
from pipeline.agents import ScreeningAgent
from pipeline.config import Settings
from pipeline.core.matching import Matcher
from pipeline.hashpool import HashPool
from pipeline.health import WorkerHealth
from pipeline.memory import IdleTrim
from pipeline.metrics import PipelineMetrics
from pipeline.outputs import OutputWriter
from pipeline.screening import Screener
from tests.imagegen import encode, synthetic_image
from tests.trickle import trickling_server

#: Long enough that the slow upload is certainly still pending while the inline ones finish,
#: even on a loaded machine; only the deadline test uses a short one.
LONG_DEADLINE_SECONDS = 60.0
SHORT_DEADLINE_SECONDS = 1.0


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Event:
    key: bytes
    value: bytes
    message: Message


@pytest.fixture(scope="module")
def trickling_url() -> Iterator[str]:
    """A loopback URL whose body never ends: one byte every 0.1 s."""
    with trickling_server(0.1) as url:
        yield url


def event_bytes(upload_id: str, content: dict[str, str]) -> bytes:
    return json.dumps({"schema_version": 1, "upload_id": upload_id, "content": content}).encode()


class Recorder:
    """Stands in for the producer: records every written record and every acknowledgement."""

    def __init__(self) -> None:
        self.verdicts: list[str] = []
        self.errors: dict[str, dict[str, Any]] = {}
        self.acked: list[Message] = []

    async def send(self, output: str, key: bytes | None, value: bytes) -> Awaitable[None]:
        if output == "verdicts":
            verdict = json.loads(value)
            self.verdicts.append(verdict["upload_id"])
            if verdict["error"]:
                self.errors[verdict["upload_id"]] = verdict["error"]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def ack(self, event: Event) -> None:
        self.acked.append(event.message)


def make_agent(
    recorder: Recorder,
    max_in_flight: int,
    max_uncommitted: int,
    deadline: float = LONG_DEADLINE_SECONDS,
    forget_content: Callable[[Any], None] | None = None,
    release_unacknowledged: Callable[[Any], None] | None = None,
) -> ScreeningAgent:
    settings = Settings(
        bootstrap_servers="unused:9092",
        worker_id="w1",
        fetch_allow_networks="127.0.0.1/32",
        fetch_read_timeout_seconds=1.0,
        fetch_deadline_seconds=deadline,
        fetch_attempts=1,
    )
    metrics = PipelineMetrics()
    screener = Screener(
        settings,
        matcher=Matcher(),
        fetcher=Fetcher(settings.fetch_limits()),
        pool=HashPool(0),
        metrics=metrics,
        limits=settings.guard_limits(),
    )
    health = WorkerHealth(lists_caught_up=True)
    return ScreeningAgent(
        screener=screener,
        writer=OutputWriter(recorder.send, metrics, worker_id="w1"),
        metrics=metrics,
        health=health,
        max_in_flight=max_in_flight,
        max_uncommitted=max_uncommitted,
        forget_content=forget_content,
        release_unacknowledged=release_unacknowledged,
    )


async def stream_of(events: list[Event], taken: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        taken.append(event)
        yield event
    await asyncio.Event().wait()  # a live stream does not end; the test cancels the agent


def uploads(url: str, inline: int, partitions: int = 2) -> list[Event]:
    image = base64.b64encode(encode(synthetic_image(3, 160, 120))).decode()
    events = [Event(b"slow", event_bytes("slow", {"kind": "url", "url": url}), Message("u", 0, 0))]
    for i in range(inline):
        partition = i % partitions
        offset = sum(1 for e in events if e.message.partition == partition)
        content = {"kind": "inline", "data_base64": image}
        value = event_bytes(f"inline-{i}", content)
        events.append(Event(b"k", value, Message("u", partition, offset)))
    return events


async def run_until(
    agent: ScreeningAgent,
    source: AsyncIterator[Event],
    recorder: Recorder,
    done: Callable[[], bool],
    timeout: float,
    linger: float = 0.0,
) -> None:
    """Run the agent until ``done()`` (fail after ``timeout`` s), ``linger`` s more, cancel."""
    task = asyncio.create_task(agent.run(source, recorder.ack))
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.02)
        await asyncio.sleep(linger)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_inline_verdicts_do_not_wait_for_a_slow_url_and_acks_stay_in_order(
    trickling_url: str,
) -> None:
    recorder = Recorder()
    agent = make_agent(recorder, max_in_flight=8, max_uncommitted=100)
    events = uploads(trickling_url, inline=30)
    inline_ids = {f"inline-{i}" for i in range(30)}

    async def main() -> None:
        taken: list[Event] = []
        all_inline = lambda: inline_ids <= set(recorder.verdicts)  # noqa: E731
        await run_until(agent, stream_of(events, taken), recorder, all_inline, 30)
        assert "slow" not in recorder.verdicts
        # Partition 1 is all inline: fully acknowledged. Partition 0 is held by the slow
        # upload at its head: nothing of it acknowledged yet.
        assert [m.offset for m in recorder.acked if m.partition == 1] == list(range(15))
        assert [m for m in recorder.acked if m.partition == 0] == []

    asyncio.run(main())


def test_the_slow_upload_ends_at_its_deadline_then_its_partition_is_acked_in_order(
    trickling_url: str,
) -> None:
    recorder = Recorder()
    agent = make_agent(
        recorder, max_in_flight=8, max_uncommitted=100, deadline=SHORT_DEADLINE_SECONDS
    )
    events = uploads(trickling_url, inline=10)

    async def main() -> None:
        all_acked = lambda: len(recorder.acked) == len(events)  # noqa: E731
        await run_until(agent, stream_of(events, []), recorder, all_acked, 30)

    asyncio.run(main())
    assert recorder.errors["slow"]["reason"] == "timeout"
    assert "deadline of 1s" in recorder.errors["slow"]["message"]
    assert [m.offset for m in recorder.acked if m.partition == 0] == list(range(6))


def test_no_more_than_max_uncommitted_uploads_are_taken_behind_a_slow_one(
    trickling_url: str,
) -> None:
    recorder = Recorder()
    agent = make_agent(recorder, max_in_flight=2, max_uncommitted=5)
    events = uploads(trickling_url, inline=20, partitions=1)
    taken: list[Event] = []

    async def main() -> None:
        four_verdicts = lambda: len(recorder.verdicts) >= 4  # noqa: E731
        await run_until(agent, stream_of(events, taken), recorder, four_verdicts, 30, linger=0.5)

    asyncio.run(main())
    assert "slow" not in recorder.verdicts
    assert recorder.acked == []  # all behind the slow head of the only partition
    # 5 admitted, plus the one the loop holds while it waits for room.
    assert len(taken) == 6


@dataclass
class HeldEvent:
    """An event whose content can be dropped (as Faust's can)."""

    key: bytes
    value: bytes | None
    message: Message


def test_uploads_done_behind_a_slow_one_wait_without_their_content(trickling_url: str) -> None:
    """Up to max_uncommitted uploads wait behind a slow one for their acknowledgement; before,
    each kept its record (a few hundred KB inline), so the window could hold hundreds of MB."""
    recorder = Recorder()
    forgotten: list[str] = []

    def forget(event: HeldEvent) -> None:
        forgotten.append(json.loads(event.value or b"{}")["upload_id"])
        event.value = None

    agent = make_agent(recorder, max_in_flight=2, max_uncommitted=50, forget_content=forget)
    events = [HeldEvent(e.key, e.value, e.message) for e in uploads(trickling_url, 10, 1)]

    async def main() -> None:
        all_inline = lambda: len(recorder.verdicts) >= 10  # noqa: E731
        await run_until(agent, stream_of(events, []), recorder, all_inline, 30)

    asyncio.run(main())
    assert recorder.acked == []  # every one waits behind the slow head of the partition
    assert sorted(forgotten) == sorted(f"inline-{i}" for i in range(10))
    assert [e.value is None for e in events] == [False] + [True] * 10  # the slow one: still needed


def test_a_slow_upload_keeps_the_worker_busy_for_the_idle_trim(trickling_url: str) -> None:
    """The idle memory trim waits for the last upload in flight, not only for the last one
    taken: before, a worker whose last upload was a slow URL trimmed 2 s after taking it, while
    it was still being screened."""
    recorder = Recorder()
    agent = make_agent(recorder, max_in_flight=8, max_uncommitted=100, deadline=3.0)
    events = uploads(trickling_url, inline=4)
    idle = IdleTrim(idle_seconds=2)
    clock = 0.0  # the trim's clock, advanced 1 s per check (its timer's interval)
    due: list[bool] = []

    def check() -> None:
        nonlocal clock
        clock += 1.0
        due.append(idle.due(agent.taken, agent.in_flight, clock))

    async def main() -> None:
        inline_done = lambda: len(recorder.verdicts) >= 4  # noqa: E731
        task = asyncio.create_task(agent.run(stream_of(events, []), recorder.ack))
        try:
            async with asyncio.timeout(30):
                while not inline_done():
                    await asyncio.sleep(0.02)
                assert (agent.taken, agent.in_flight) == (5, 1)  # only the slow URL is left
                for _ in range(10):  # 10 s on the trim's clock: never idle while it screens
                    check()
                assert not any(due)
                while "slow" not in recorder.verdicts:  # its deadline ends it
                    await asyncio.sleep(0.05)
                assert agent.in_flight == 0
                for _ in range(3):
                    check()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert due == [False] * 10 + [False, False, True]  # idle for 2 s after it ended: trim


def test_uploads_taken_before_the_topic_was_recreated_are_screened_but_never_acknowledged(
    trickling_url: str,
) -> None:
    """Their offsets belong to a topic that is gone: committed on the new topic, they would
    skip its records below them. Acknowledgements resume with what is taken afterwards."""
    recorder = Recorder()
    released: list[Message] = []
    agent = make_agent(
        recorder,
        max_in_flight=8,
        max_uncommitted=100,
        deadline=SHORT_DEADLINE_SECONDS,
        release_unacknowledged=lambda event: released.append(event.message),
    )
    old = uploads(trickling_url, inline=6)  # the slow one holds partition 0 of the old topic
    image = base64.b64encode(encode(synthetic_image(4, 160, 120))).decode()
    new = [
        Event(b"k", event_bytes(f"new-{i}", {"kind": "inline", "data_base64": image}),
              Message("u", i % 2, i // 2))
        for i in range(4)
    ]  # fmt: skip
    recreated = asyncio.Event()

    async def source() -> AsyncIterator[Event]:
        for event in old:
            yield event
        await recreated.wait()
        for event in new:
            yield event
        await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.create_task(agent.run(source(), recorder.ack))
        try:
            async with asyncio.timeout(30):
                while len(recorder.verdicts) < len(old) - 1:  # all but the slow one
                    await asyncio.sleep(0.02)
                agent.forget_taken()
                recreated.set()
                while len(recorder.verdicts) < len(old) + len(new):
                    await asyncio.sleep(0.02)
                while len(recorder.acked) < len(new):
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    # Partition 1 of the old topic was acknowledged before the change; after it, only the new
    # uploads are, although the old partition 0 finished (the slow one at its deadline) later.
    old_messages = {id(e.message) for e in old}  # equal offsets on both topics: by identity
    old_acked = [m for m in recorder.acked if id(m) in old_messages]
    assert [(m.partition, m.offset) for m in old_acked] == [(1, 0), (1, 1), (1, 2)]
    assert sorted(id(m) for m in recorder.acked[3:]) == sorted(id(e.message) for e in new)
    assert agent.unacknowledged_old == 4  # the slow one and the 3 inline behind it
    # ... each released instead (Faust must not wait for it before a rebalance goes on).
    assert sorted((m.partition, m.offset) for m in released) == [(0, o) for o in range(4)]
