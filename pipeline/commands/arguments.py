"""Value types for command-line options that more than one command module uses.

Each turns one option's text into its value or raises :class:`argparse.ArgumentTypeError`, so a
bad value is reported by argparse as one usage line (exit 2) before the command runs, never as
a traceback from inside it. Must not do I/O.
"""

from __future__ import annotations

import argparse

from pipeline.core.types import PERCEPTUAL_ALGORITHMS, Algorithm


def positive_seconds(text: str) -> float:
    """A duration in seconds, more than 0 (``--timeout 2.5``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, e.g. 2.5, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def threshold(text: str) -> tuple[Algorithm, int]:
    """One perceptual threshold as ``ALG=BITS`` (``--threshold phash=8``). Whether BITS is in
    range for the algorithm is :meth:`~pipeline.core.hashlist.ListConfig.create`'s to check."""
    perceptual = ", ".join(PERCEPTUAL_ALGORITHMS)
    name, equals, bits = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"expected ALG=BITS, e.g. phash=8, got {text!r}")
    try:
        algorithm = Algorithm(name.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown algorithm {name!r} in {text!r}; thresholds are for {perceptual}"
        ) from None
    if not algorithm.is_perceptual:
        raise argparse.ArgumentTypeError(
            f"{algorithm} always matches at distance 0; thresholds are for {perceptual}"
        )
    try:
        return algorithm, int(bits)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"BITS must be a whole number of bits, got {bits!r} in {text!r}"
        ) from None
