"""Supervision of background services and what /livez makes of it (pure asyncio, fake clock).

The services here are small scripted coroutines; the same supervisor around the real hash-list
feed and alert delivery, on a real broker, is tested in tests/integration/test_services.py.
"""

from __future__ import annotations

import asyncio

import pytest

from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics
from pipeline.supervision import supervise


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def restarts(metrics: PipelineMetrics, service: str) -> float:
    value = metrics.registry.get_sample_value(
        "screening_service_restarts_total", {"service": service}
    )
    return value or 0.0


def test_restart_series_exist_at_zero() -> None:
    metrics = PipelineMetrics()
    assert restarts(metrics, "hashlist_feed") == 0.0
    assert restarts(metrics, "alert_delivery_webhook") == 0.0
    assert restarts(metrics, "alert_delivery_alertmanager") == 0.0


def test_a_failing_service_is_restarted_with_growing_backoff_until_it_runs() -> None:
    clock = Clock()
    health = WorkerHealth(unhealthy_after_seconds=60, clock=clock)
    metrics = PipelineMetrics()
    sleeps: list[float] = []
    runs = 0

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    async def service() -> None:
        nonlocal runs
        runs += 1
        if runs <= 4:
            raise ConnectionError("broker unreachable")
        health.service_running("hashlist_feed")  # what the real services do on every cycle

    asyncio.run(
        supervise(
            "hashlist_feed",
            service,
            health=health,
            metrics=metrics,
            backoff_base_seconds=1.0,
            backoff_max_seconds=3.0,
            sleep=sleep,
        )
    )
    assert runs == 5
    assert restarts(metrics, "hashlist_feed") == 4
    assert len(sleeps) == 4
    assert 0.5 <= sleeps[0] <= 1.0  # base, with jitter
    assert all(1.5 <= s <= 3.0 for s in sleeps[2:])  # capped
    report = health.report()["services"]["hashlist_feed"]  # type: ignore[index]
    assert report == {
        "state": "running",
        "failures": 0,
        "restarts": 4,
        "failing_for_seconds": None,
        "last_error": "ConnectionError",
    }
    assert health.live


def test_a_service_failing_for_too_long_makes_the_worker_not_live() -> None:
    clock = Clock()
    health = WorkerHealth(unhealthy_after_seconds=60, clock=clock)
    health.register_service("alert_delivery")
    assert health.report()["services"]["alert_delivery"]["state"] == "starting"  # type: ignore[index]
    health.service_failed("alert_delivery", "CommitFailedError")
    clock.now += 59
    assert health.live
    health.service_failed("alert_delivery", "CommitFailedError")  # still failing, same streak
    clock.now += 2
    assert not health.live
    assert not health.ready
    assert health.failing_services() == ["alert_delivery"]
    report = health.report()
    assert report["live"] is False
    assert report["services"]["alert_delivery"]["failing_for_seconds"] == 61.0  # type: ignore[index]
    health.service_running("alert_delivery")  # recovered: live again without a restart
    assert health.live


def test_a_broken_hashing_pool_makes_the_worker_not_live() -> None:
    health = WorkerHealth()
    health.pool_broken_reason = "cannot start hashing processes: OSError"
    assert not health.live


def test_supervision_ends_when_the_service_returns_and_passes_cancellation_on() -> None:
    health = WorkerHealth()
    metrics = PipelineMetrics()

    async def returns() -> None:
        return None

    asyncio.run(supervise("alert_delivery", returns, health=health, metrics=metrics))
    assert restarts(metrics, "alert_delivery") == 0

    async def forever() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.create_task(
            supervise("alert_delivery", forever, health=health, metrics=metrics)
        )
        await asyncio.sleep(0.05)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert restarts(metrics, "alert_delivery") == 0
