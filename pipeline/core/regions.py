"""Where the picture really is inside an upload: the content regions hashed besides the whole.

Owns :class:`Region` (a rectangle in the upload's pixels and what kind of region it is) and
the search for candidate regions: uniform borders trimmed (padding, letterbox, pillarbox) and
the embedded picture inside a screenshot, chat frame or meme. Works on the guard's reduced
decode; never decodes, reads files, logs or matches anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RegionKind(enum.StrEnum):
    """What a hashed region is: bounded, snake_case, fit for a verdict field and a metric label."""

    WHOLE = "whole"
    """The whole upload, as decoded."""
    TRIMMED = "trimmed"
    """The upload without uniform borders (pad, letterbox, pillarbox)."""
    EMBEDDED = "embedded"
    """A picture inside flat surroundings (screenshot, chat frame, meme bars)."""


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle of the upload in its own pixels (x, y of the top-left corner; width, height).

    Raises ValueError for an empty or negative rectangle."""

    x: int
    y: int
    width: int
    height: int
    kind: RegionKind = RegionKind.WHOLE

    def __post_init__(self) -> None:
        if self.x < 0 or self.y < 0 or self.width <= 0 or self.height <= 0:
            raise ValueError(f"not a region: {self!r}")

    @classmethod
    def whole(cls, width: int, height: int) -> Region:
        """The whole picture of ``width`` x ``height`` pixels."""
        return cls(0, 0, width, height, RegionKind.WHOLE)
