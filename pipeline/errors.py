"""The one exception hierarchy of the pipeline.

Every error the pipeline raises on purpose derives from :class:`PipelineError`. Callers decide
what to do by class, never by message: :class:`RetryableError` may succeed on a later attempt
(a timeout, a sink that is down), :class:`PermanentError` never will (a corrupt image, a
malformed event). Each permanent error carries a short machine-readable ``reason`` (a bounded
vocabulary, safe for metric labels and dead letters) next to the human-readable message.
This module must not import anything from the rest of the package.
"""

from __future__ import annotations

import enum


class ErrorReason(enum.StrEnum):
    """Reasons any stage may report (bounded, like every reason: metric labels)."""

    #: An unexpected error: a bug. The worker log has the traceback.
    INTERNAL_ERROR = "internal_error"
    #: A reason outside every known vocabulary (counted as this, never as itself).
    OTHER = "other"


class PipelineError(Exception):
    """Root of every error the pipeline raises deliberately."""

    #: Short, bounded, machine-readable cause. Safe for metric labels; never holds user data.
    reason: str = "error"
    #: How many times the failed work was tried before this error was given up on (dead
    #: letters report it); whoever retries sets it when raising the last failure.
    attempts: int = 1

    def __init__(self, message: str, *, reason: str | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.attempts = attempts


class RetryableError(PipelineError):
    """A failure that may go away if the same work is tried again later."""

    reason = "retryable"


class PermanentError(PipelineError):
    """A failure that will recur for the same input; retrying is pointless."""

    reason = "permanent"


class ConfigError(PermanentError):
    """Settings or a configuration file are invalid."""

    reason = "config"


class InputRejected(PermanentError):
    """Untrusted input (an image, an event, a hash-list line) was refused."""

    reason = "rejected"
