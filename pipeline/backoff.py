"""Retry delays: one rule for every retry loop in the pipeline.

Owns only the arithmetic of capped exponential backoff with jitter; each loop decides what it
retries and for how long. Must not sleep or read settings.
"""

from __future__ import annotations

import random

#: Beyond this many doublings every delay is the cap anyway; clamping keeps the arithmetic
#: finite for an outage of any length (2.0 ** 1024 overflows a float).
_MAX_DOUBLINGS = 60


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (0 for the first retry).

    ``min(cap, base * 2**attempt)`` scaled by a uniform jitter in [0.5, 1]: retries of many
    workers spread out, and none comes back immediately.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 0), _MAX_DOUBLINGS))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
