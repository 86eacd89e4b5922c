"""Gauges that report state, not events: readiness and consumer lag must follow the worker's
state as it is now, never a value left over from an earlier moment."""

from __future__ import annotations

from prometheus_client import generate_latest

from pipeline.health import WorkerHealth
from pipeline.metrics import MAX_NAMED_QUARANTINES, PipelineMetrics, consumer_lag


def scraped(metrics: PipelineMetrics, name: str) -> dict[str, float]:
    """Every sample of ``name`` in a real exposition, by its label text."""
    samples: dict[str, float] = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series.removeprefix(name)] = float(value)
    return samples


def test_ready_gauge_falls_back_to_zero_when_readyz_would() -> None:
    metrics, health = PipelineMetrics(), WorkerHealth()
    metrics.report_readiness(lambda: health.ready)
    assert scraped(metrics, "screening_ready") == {"": 0.0}
    health.lists_caught_up = health.screening_started = True
    assert scraped(metrics, "screening_ready") == {"": 1.0}
    health.pool_broken_reason = "cannot start hashing processes"
    assert scraped(metrics, "screening_ready") == {"": 0.0}


def test_lag_series_of_partitions_no_longer_owned_are_removed() -> None:
    metrics = PipelineMetrics()
    metrics.set_consumer_lag({("uploads", p): 50 for p in range(4)})
    assert len(scraped(metrics, "screening_consumer_lag_messages")) == 4
    metrics.set_consumer_lag({("uploads", 1): 7})  # a rebalance left this worker partition 1
    assert scraped(metrics, "screening_consumer_lag_messages") == {
        '{partition="1",topic="uploads"}': 7.0
    }
    metrics.set_consumer_lag({})
    assert scraped(metrics, "screening_consumer_lag_messages") == {}


def test_lag_is_highwater_minus_position_and_unknown_until_both_are_known() -> None:
    assert consumer_lag(120, 100) == 20
    assert consumer_lag(100, 100) == 0
    assert consumer_lag(90, 100) == 0  # a stale high watermark is no negative backlog
    assert consumer_lag(None, 100) is None
    assert consumer_lag(100, None) is None


def test_quarantined_entries_are_counted_per_list_and_named_up_to_the_cap() -> None:
    metrics = PipelineMetrics()
    metrics.register_list("eokm")
    metrics.register_list("iwf")
    assert scraped(metrics, "screening_quarantined_entries") == {
        '{list="eokm"}': 0.0,
        '{list="iwf"}': 0.0,
    }
    metrics.set_quarantined({("eokm", "blank"): 1000.0})
    assert scraped(metrics, "screening_entry_quarantined_timestamp_seconds") == {
        '{entry_id="blank",list="eokm"}': 1000.0
    }
    many = {("iwf", f"e{i}"): 2000.0 + i for i in range(MAX_NAMED_QUARANTINES + 10)}
    metrics.set_quarantined({("eokm", "blank"): 1000.0, **many})
    counts = scraped(metrics, "screening_quarantined_entries")
    assert counts == {'{list="eokm"}': 1.0, '{list="iwf"}': MAX_NAMED_QUARANTINES + 10.0}
    named = scraped(metrics, "screening_entry_quarantined_timestamp_seconds")
    assert len(named) == MAX_NAMED_QUARANTINES  # the oldest first: the blank frame is named
    assert '{entry_id="blank",list="eokm"}' in named
    metrics.set_quarantined({})  # every one lifted: counts fall to zero, names go
    assert set(scraped(metrics, "screening_quarantined_entries").values()) == {0.0}
    assert scraped(metrics, "screening_entry_quarantined_timestamp_seconds") == {}
