"""Hashing off the event loop: a process pool running the pure core on untrusted bytes.

Owns: the top-level job sent to worker processes (:func:`hash_job`, a pure function over bytes
plus stage timings), the pool's life cycle, its per-process memory cap, and recovery when a
hostile image kills a worker process. Must not: hold image bytes beyond one call, or log them.

Why processes: decode and DCT are CPU-bound and hold the GIL, so threads would stall the
event loop and with it Kafka heartbeats. Each pool process also gets an address-space limit
(``RLIMIT_AS``) so a decoder that misbehaves fails with MemoryError instead of taking the host
down; a crashed process breaks the pool, which is rebuilt, and the upload is reported as an
error rather than retried forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
from collections.abc import Iterable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial

from pipeline.core.guard import GuardLimits, decode
from pipeline.core.hashing import exact_hashes, perceptual_hashes
from pipeline.core.types import Algorithm
from pipeline.errors import PermanentError


@dataclass(frozen=True, slots=True)
class HashJobResult:
    """Hashes of one image with its decoded facts and where the time went (seconds)."""

    hashes: dict[Algorithm, int]
    format: str
    width: int
    height: int
    decode_seconds: float
    hash_seconds: float


class HashWorkerCrashed(PermanentError):
    """The hashing process died on this input (or a neighbour's) and the pool was rebuilt."""

    reason = "hash_worker_crashed"


class HashTimedOut(PermanentError):
    """Hashing did not finish in time; the pool was rebuilt (its processes killed)."""

    reason = "hash_timeout"


def hash_job(data: bytes, limits: GuardLimits, algorithms: tuple[Algorithm, ...]) -> HashJobResult:
    """Guard, decode and hash ``data``; raises ImageRejected for refused images.

    Runs in a pool process. Decode time includes the guard checks; hash time covers the exact
    digests of the original bytes and the perceptual hashes of the decoded image.
    """
    start = time.perf_counter()
    decoded = decode(data, limits)
    decoded_at = time.perf_counter()
    exact = tuple(a for a in algorithms if not a.is_perceptual)
    perceptual = tuple(a for a in algorithms if a.is_perceptual)
    hashes = {**exact_hashes(data, exact), **perceptual_hashes(decoded, perceptual)}
    done = time.perf_counter()
    return HashJobResult(
        hashes=hashes,
        format=decoded.format,
        width=decoded.width,
        height=decoded.height,
        decode_seconds=decoded_at - start,
        hash_seconds=done - decoded_at,
    )


def _limit_memory(max_bytes: int) -> None:
    """Pool initializer: cap this process's address space (Linux; ignored where unsupported)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without rlimits
        pass


class HashPool:
    """Runs :func:`hash_job` in ``processes`` worker processes (0 = in the calling thread).

    ``in_flight`` counts jobs submitted and not yet finished (the queue-depth metric).
    """

    def __init__(self, processes: int, memory_limit_bytes: int | None = None) -> None:
        self._processes = processes
        self._memory_limit = memory_limit_bytes
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self.in_flight = 0
        self.rebuilds = 0

    def start(self) -> None:
        """Start the worker processes (forkserver: no Kafka sockets or threads inherited)."""
        if self._processes == 0 or self._executor is not None:
            return
        context = multiprocessing.get_context("forkserver")
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=self._processes,
            mp_context=context,
            initializer=partial(_limit_memory, self._memory_limit) if self._memory_limit else None,
        )

    def warm_up(self, jobs: Iterable[tuple[bytes, GuardLimits, tuple[Algorithm, ...]]]) -> None:
        """Run jobs once in every process so imports and JIT caches are loaded before traffic."""
        if self._executor is None:
            return
        futures = [self._executor.submit(hash_job, *job) for job in jobs]
        concurrent.futures.wait(futures)

    async def run(
        self,
        data: bytes,
        limits: GuardLimits,
        algorithms: tuple[Algorithm, ...],
        timeout: float = 30.0,
    ) -> HashJobResult:
        """Hash one upload off the event loop. Raises what :func:`hash_job` raises,
        :class:`HashWorkerCrashed` when the process died, or :class:`HashTimedOut` after
        ``timeout`` seconds (the pool is rebuilt first in both cases)."""
        self.in_flight += 1
        try:
            if self._executor is None:
                return hash_job(data, limits, algorithms)
            loop = asyncio.get_running_loop()
            executor = self._executor
            try:
                return await asyncio.wait_for(
                    loop.run_in_executor(executor, hash_job, data, limits, algorithms), timeout
                )
            except TimeoutError:
                if self._executor is executor:
                    self._rebuild()
                raise HashTimedOut(f"hashing took longer than {timeout}s") from None
            except (BrokenProcessPool, MemoryError) as exc:
                if self._executor is executor:
                    self._rebuild()
                raise HashWorkerCrashed(f"hashing process failed: {type(exc).__name__}") from None
        finally:
            self.in_flight -= 1

    def _rebuild(self) -> None:
        old, self._executor = self._executor, None
        if old is not None:
            # A hung decoder cannot be cancelled; its process is killed with the pool.
            for process in list(getattr(old, "_processes", {}).values()):
                process.kill()
            old.shutdown(wait=False, cancel_futures=True)
        self.rebuilds += 1
        self.start()

    def close(self) -> None:
        """Stop the worker processes."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
