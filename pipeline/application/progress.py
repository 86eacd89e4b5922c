"""How a use case reports progress without printing: the caller passes a :class:`Progress`.

Owns the interface and the progress nobody watches. The commands draw it as progress bars on
stderr; tests and the worker pass nothing. Must not print.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")

#: Advances a step by this many of its units.
Advance = Callable[[int], None]


class Progress(Protocol):
    """Starts a step: ``total`` of ``unit`` (``"file"``, ``"entry"``, ``"B"`` for bytes) named
    ``label``; the context's value advances it."""

    def __call__(self, label: str, total: int, unit: str) -> AbstractContextManager[Advance]: ...


def _ignore(_: int) -> None:
    """Advances nothing."""


def no_progress(label: str, total: int, unit: str) -> AbstractContextManager[Advance]:
    """Progress that nobody watches."""
    del label, total, unit
    return nullcontext(_ignore)


def reading_files(progress: Progress) -> Callable[[Path, int], AbstractContextManager[Advance]]:
    """A step per list file read, in bytes (the progress hook of
    :func:`~pipeline.adapters.listfiles.load_paths`)."""
    return lambda path, size: progress(f"reading {path.name}", size, "B")


def counted(items: Iterable[T], advance: Advance) -> Iterator[T]:
    """``items``, advancing by one for each taken."""
    for item in items:
        advance(1)
        yield item
