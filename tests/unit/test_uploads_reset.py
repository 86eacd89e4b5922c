"""The repair of a re-created uploads topic, apart from Faust: not ready until the positions
are at the new topic's start, retried while the broker does not answer, run again when the
topic changes again meanwhile. The Faust side is tested against a live worker in
tests/integration/test_vanished_topics.py."""

from __future__ import annotations

import asyncio

from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics
from pipeline.uploads_reset import UploadsReset


class Positions:
    """Fails ``failures`` times, then moves partitions 0 and 1 to offset 0; each call waits
    for ``gate`` so a test can act while a repair is running."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def restart_from_earliest(self, topic: str) -> dict[int, int]:
        self.calls += 1
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker away")
        return {0: 0, 1: 0}


class Agent:
    def __init__(self) -> None:
        self.forgotten = 0

    def forget_taken(self) -> None:
        self.forgotten += 1


def make(positions: Positions) -> tuple[UploadsReset, Agent, WorkerHealth, PipelineMetrics]:
    agent, metrics = Agent(), PipelineMetrics()
    health = WorkerHealth(lists_caught_up=True, screening_started=True)

    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    reset = UploadsReset(
        "uploads", positions, agent, health=health, metrics=metrics, sleep=no_sleep
    )
    return reset, agent, health, metrics


def resets(metrics: PipelineMetrics) -> float:
    return metrics.registry.get_sample_value("screening_uploads_resets_total") or 0.0


async def settled() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def test_not_ready_from_the_request_until_the_positions_are_at_the_new_start() -> None:
    positions = Positions()
    reset, agent, health, metrics = make(positions)

    async def main() -> None:
        positions.gate.clear()
        assert health.ready
        reset.request("was deleted or re-created")
        assert agent.forgotten == 1  # at once: nothing taken so far is acknowledged
        assert not health.ready
        assert "re-reading it from the start" in str(health.report()["uploads_problem"])
        assert resets(metrics) == 1
        await settled()
        assert not health.ready  # still moving
        positions.gate.set()
        await settled()
        assert health.ready
        assert health.uploads_problem is None

    asyncio.run(main())


def test_a_broker_that_does_not_answer_is_retried_and_the_worker_stays_not_ready() -> None:
    positions = Positions(failures=3)
    reset, _, health, _ = make(positions)

    async def main() -> None:
        reset.request("was deleted or re-created")
        await settled()
        assert positions.calls == 4
        assert health.ready

    asyncio.run(main())


def test_a_change_during_the_repair_runs_it_again() -> None:
    positions = Positions()
    reset, agent, health, metrics = make(positions)

    async def main() -> None:
        positions.gate.clear()
        reset.request("was deleted or re-created")
        await settled()
        reset.request("was deleted or re-created")  # again, while the first is running
        positions.gate.set()
        await settled()
        assert positions.calls == 2
        assert agent.forgotten == 2
        assert resets(metrics) == 2
        assert health.ready

    asyncio.run(main())
