"""Screening files on disk as the worker screens uploads (``pipeline hash`` and ``match``).

Owns reading the files (the byte cap checked before a file is read), the hashing pool's set-up
for a batch of files, handing each outcome over in input order with bounded read-ahead, and
each file's verdict. Must not print: outcomes and verdicts go to the caller's ``handle``.

Files are hashed as uploads are: :func:`pipeline.hashprocess.hash_job` in a
:class:`~pipeline.hashpool.HashPool` with the worker's retry policy
(:meth:`~pipeline.hashpool.HashPool.hash`), in processes capped in address space
(:data:`~pipeline.hashprocess.HASH_PROCESS_MEMORY_BYTES`), each file with a time limit, so a
hostile file costs a refusal, not the machine or a hung command. Verdicts are built by the
worker's functions (:mod:`pipeline.verdicts`), with the same hashes and stages.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pipeline.config import Settings
from pipeline.core.decision import decide
from pipeline.core.guard import GuardLimits, ImageRejected
from pipeline.core.matching import Matcher
from pipeline.core.types import Algorithm
from pipeline.demo.images import encode, synthetic_image
from pipeline.errors import InputRejected, PipelineError
from pipeline.hashpool import HashPool
from pipeline.hashprocess import HASH_PROCESS_MEMORY_BYTES, HashJobResult
from pipeline.models import Stage, Verdict
from pipeline.verdicts import (
    error_verdict,
    hashing_failure_stage,
    image_facts,
    screened_verdict,
    upload_matches,
    verdict_algorithms,
)

T = TypeVar("T")

#: What hashing one upload came to: its hashes, or why it has none.
HashOutcome = HashJobResult | PipelineError


def read_upload(path: Path, limits: GuardLimits) -> bytes:
    """File bytes, the byte cap applied before reading the whole file. Raises InputRejected
    (``too_large_bytes``, ``unreadable``)."""
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise InputRejected(f"{size} bytes exceed {limits.max_bytes}", reason="too_large_bytes")
        return path.read_bytes()
    except OSError as exc:
        raise InputRejected(f"cannot read: {exc.strerror}", reason="unreadable") from None


def read_uploads(
    paths: Iterable[Path], limits: GuardLimits
) -> Iterator[tuple[Path, bytes | PipelineError]]:
    """Each path with its bytes, or with the reason it could not be read (read lazily)."""
    for path in paths:
        try:
            yield path, read_upload(path, limits)
        except InputRejected as exc:
            yield path, exc


async def hash_uploads(
    pool: HashPool,
    uploads: Iterable[tuple[T, bytes | PipelineError]],
    limits: GuardLimits,
    algorithms: tuple[Algorithm, ...],
    handle: Callable[[T, HashOutcome], None],
) -> None:
    """Hash each upload in ``pool`` and call ``handle`` with its result or refusal, in input
    order (an upload given as an error is handed through).

    Hashing follows the pool's retry policy (:meth:`~pipeline.hashpool.HashPool.hash`, the
    worker's too): a job killed with a neighbour's process runs once more, alone, so only a
    file that crashes or times out by itself is reported, never its neighbours. Uploads are
    taken at most twice the processes ahead of the one being handed over (files are read
    lazily): memory stays bounded.
    """

    async def one(data: bytes) -> HashOutcome:
        try:
            return await pool.hash(data, limits, algorithms)
        except PipelineError as exc:
            return exc

    window: deque[tuple[T, asyncio.Future[HashOutcome] | PipelineError]] = deque()
    try:
        for key, data in uploads:
            pending = data if isinstance(data, PipelineError) else asyncio.ensure_future(one(data))
            window.append((key, pending))
            while len(window) > 2 * max(1, pool.processes):
                await _hand_over(window.popleft(), handle)
        while window:
            await _hand_over(window.popleft(), handle)
    finally:
        for _, left in window:
            if isinstance(left, asyncio.Future):
                left.cancel()


async def _hand_over(
    item: tuple[T, asyncio.Future[HashOutcome] | PipelineError],
    handle: Callable[[T, HashOutcome], None],
) -> None:
    key, pending = item
    handle(key, pending if isinstance(pending, PipelineError) else await pending)


def hash_files(
    paths: Sequence[Path],
    settings: Settings,
    algorithms: tuple[Algorithm, ...],
    handle: Callable[[Path, HashOutcome], None],
    *,
    timeout_seconds: float | None = None,
    videos: bool = False,
) -> None:
    """Hash each file with ``algorithms`` and call ``handle`` with its result or refusal, in
    input order. Blocking (runs its own event loop). Videos are hashed (sampled frames) when
    ``videos``, else refused as ``format_not_allowed``.

    Up to PIPELINE_HASH_PROCESSES processes (no more than files), each file limited to
    ``timeout_seconds`` of running time (default PIPELINE_HASH_TIMEOUT_SECONDS); a timeout
    beside other files is run again alone, as a crash is (the limit may be tight)."""
    limits = settings.guard_limits(videos=videos)
    pool = HashPool(
        min(settings.hash_processes, len(paths)),
        HASH_PROCESS_MEMORY_BYTES,
        timeout_seconds=timeout_seconds or settings.hash_timeout_seconds,
        retry_timeouts=True,
    )
    try:
        pool.start()
        # A real decode and the same hashes in every process load Pillow's plugins and the
        # lazily imported DCT (scipy, ~0.1-0.2 s), so no file's time limit is spent on start-up;
        # the pool warms the processes it restarts with the same jobs.
        pool.warm_up([(encode(synthetic_image(0, 64, 48)), limits, algorithms)] * pool.processes)
        asyncio.run(hash_uploads(pool, read_uploads(paths, limits), limits, algorithms, handle))
    finally:
        pool.close()


def screen_files(
    paths: Sequence[Path],
    matcher: Matcher,
    settings: Settings,
    handle: Callable[[Path, Verdict], None],
    *,
    timeout_seconds: float | None = None,
) -> None:
    """Screen each file against ``matcher`` and call ``handle`` with its verdict (the upload
    id is the path), in input order. Blocking; hashing as :func:`hash_files`."""

    def verdict_of(path: Path, outcome: HashOutcome) -> None:
        handle(path, file_verdict(path, outcome, matcher, settings))

    algorithms = verdict_algorithms(matcher.algorithms_in_use())
    hash_files(
        paths, settings, algorithms, verdict_of, timeout_seconds=timeout_seconds, videos=True
    )


def file_verdict(path: Path, outcome: HashOutcome, matcher: Matcher, settings: Settings) -> Verdict:
    """The verdict of one file: matched and decided, or an ``error`` verdict naming the stage
    that failed (``fetch`` for a file that could not be read, where the worker fetches)."""
    now = datetime.now(UTC)
    if isinstance(outcome, PipelineError):
        unread = isinstance(outcome, InputRejected) and not isinstance(outcome, ImageRejected)
        return error_verdict(
            upload_id=str(path),
            stage=Stage.FETCH if unread else hashing_failure_stage(outcome),
            reason=outcome.reason,
            message=str(outcome),
            on_error=settings.on_error,
            worker_id=settings.worker_id,
            decided_at=now,
        )
    return screened_verdict(
        upload_id=str(path),
        hashes=outcome.hashes,
        image=image_facts(outcome),
        decision=decide(upload_matches(matcher, outcome, settings.vpdq_rule())),
        worker_id=settings.worker_id,
        decided_at=now,
    )
