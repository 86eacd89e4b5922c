"""The one retry-delay rule: doubling from a base, capped, jittered into [0.5, 1] of that."""

from __future__ import annotations

import pytest

from pipeline.backoff import backoff_seconds


@pytest.mark.parametrize(("attempt", "ceiling"), [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0)])
def test_delay_doubles_up_to_the_cap_with_jitter(attempt: int, ceiling: float) -> None:
    delays = [backoff_seconds(attempt, 0.5, 30.0) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert max(delays) - min(delays) > ceiling / 10  # jittered, not constant


def test_an_outage_of_any_length_keeps_the_cap() -> None:
    # 2 ** attempt as a float overflows after ~1,000 attempts: hours into a sink outage.
    assert 15.0 <= backoff_seconds(5000, 0.5, 30.0) <= 30.0
    assert 0.25 <= backoff_seconds(-1, 0.5, 30.0) <= 0.5
