"""Hashing off the event loop: a process pool running the pure core on untrusted bytes.

Owns: the pool's life cycle (the job and the process side are :mod:`pipeline.hashprocess`),
its per-process memory cap, recovery when a hostile image kills a worker process, and the one
retry policy the worker and the CLI share (:meth:`HashPool.hash`). Must not: hold image bytes
beyond one call, or log them.

Why processes: decode and DCT are CPU-bound and hold the GIL, so threads would stall the
event loop and with it Kafka heartbeats. Each pool process also gets an address-space limit
(``RLIMIT_AS``) so a decoder that misbehaves fails with MemoryError instead of taking the host
down; a crashed process breaks the pool, which is rebuilt, and the upload is run once more,
alone, then reported as an error rather than retried forever. Jobs wait for a free process
outside the executor, so the per-job timeout counts running time only and a rebuild never
cancels queued jobs.

A hung decoder cannot be cancelled, only killed: each process reports its own PID to its
executor (:class:`~pipeline.hashprocess.ProcessIds`), and the pool signals those PIDs itself.
Public APIs only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import multiprocessing
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager

from pipeline.core.guard import GuardLimits
from pipeline.core.types import Algorithm
from pipeline.errors import PermanentError, PipelineError
from pipeline.hashprocess import (
    HashJob,
    HashJobResult,
    ProcessIds,
    hash_job,
    init_process,
    ping,
)

#: The processes' side of the pool: imported once by the fork server that starts them.
PRELOADED_MODULE = "pipeline.hashprocess"


class HashReason(enum.StrEnum):
    """Why hashing in the pool failed (bounded: a metric label and a dead-letter field)."""

    WORKER_CRASHED = "hash_worker_crashed"
    TIMEOUT = "hash_timeout"


class HashWorkerCrashed(PermanentError):
    """The hashing process died on this input (or a neighbour's) and the pool was rebuilt."""

    reason = HashReason.WORKER_CRASHED


class HashTimedOut(PermanentError):
    """Hashing did not finish in time; the pool was rebuilt (its processes killed)."""

    reason = HashReason.TIMEOUT


class _Gate:
    """Turns at the pool: shared, or alone (a suspect job's retry). A turn alone waits until no
    shared turn runs and keeps new ones waiting until it ends."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._shared = 0
        self._alone = False
        self._wanted = 0  # turns alone waiting

    @asynccontextmanager
    async def turn(self, alone: bool) -> AsyncIterator[None]:
        async with self._changed:
            if alone:
                self._wanted += 1
                try:
                    await self._changed.wait_for(lambda: not self._shared and not self._alone)
                finally:
                    self._wanted -= 1
                    self._changed.notify_all()  # shared turns may go if this one gave up
                self._alone = True
            else:
                await self._changed.wait_for(lambda: not self._alone and not self._wanted)
                self._shared += 1
        try:
            yield
        finally:
            async with self._changed:
                if alone:
                    self._alone = False
                else:
                    self._shared -= 1
                self._changed.notify_all()


class HashPool:
    """Runs :func:`hash_job` in ``processes`` worker processes (0 = in the calling thread).

    At most ``processes`` jobs are in the executor at a time; the rest wait on a semaphore in
    the event loop. So a job starts running as soon as it is submitted, its timeout measures
    running time only (a batch behind one slow image does not time out with it), and when the
    pool is rebuilt there are no queued executor jobs to be cancelled, only the running ones,
    which fail as :class:`HashWorkerCrashed` and are worth one retry. A rebuilt pool is warmed
    (processes started, the :meth:`warm_up` jobs run) before it takes uploads, so start-up does
    not count against a job's timeout either.

    Uploads (worker and CLI) are hashed by :meth:`hash`: :meth:`run` plus the retry policy.
    ``retry_timeouts`` is for the CLI, whose ``--timeout`` may be tight enough for a busy
    machine to matter; the worker leaves it off: a hostile image costs one time limit, not two.

    ``waiting`` counts jobs waiting (for a process or a turn alone), ``running`` jobs in a
    process. When the pool cannot be restarted, ``broken_reason`` says why (and ``on_broken``
    is told) until a later start succeeds.
    """

    def __init__(
        self,
        processes: int,
        memory_limit_bytes: int | None = None,
        *,
        timeout_seconds: float = 30.0,
        job: HashJob = hash_job,
        on_broken: Callable[[str | None], None] | None = None,
        retry_timeouts: bool = False,
    ) -> None:
        self.processes = processes
        self._retry_timeouts = retry_timeouts
        self._gate = _Gate()
        self._memory_limit = memory_limit_bytes
        self._timeout = timeout_seconds
        self._job = job
        self._on_broken = on_broken
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        #: The current executor's processes (None exactly when ``_executor`` is None).
        self._process_ids: ProcessIds | None = None
        self._slots = asyncio.Semaphore(max(1, processes))
        self._warm_jobs: list[tuple[bytes, GuardLimits, tuple[Algorithm, ...]]] = []
        #: Warming the current executor, until done; None when it is warm.
        self._warming: asyncio.Future[None] | None = None
        self.waiting = 0
        self.running = 0
        self.rebuilds = 0
        self.broken_reason: str | None = None

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet finished (waiting or running)."""
        return self.waiting + self.running

    def start(self) -> None:
        """Start the worker processes (forkserver: no Kafka sockets or threads inherited).

        Raises OSError (or whatever multiprocessing raises) when processes cannot be started.
        """
        if self.processes == 0 or self._executor is not None:
            return
        context = multiprocessing.get_context("forkserver")
        # The fork server imports the job's module (pipeline.hashprocess: numpy, scipy,
        # Pillow) once; each process forked from it then starts without importing them itself
        # (3-7 s on a busy 2-core machine), which every rebuild after a crash or a timeout
        # paid. The server is a fresh interpreter: no Kafka socket or thread is inherited
        # still. "__main__" is multiprocessing's default preload. Takes effect when the
        # server starts (with the first pool of the process); later calls change nothing.
        preload = ["__main__", PRELOADED_MODULE]
        job_module = getattr(self._job, "__module__", None)  # tests pass jobs of their own
        if isinstance(job_module, str) and job_module not in preload:
            preload.append(job_module)
        context.set_forkserver_preload(preload)
        process_ids = ProcessIds(context)
        try:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=context,
                initializer=init_process,
                initargs=(self._memory_limit, process_ids.report),
            )
        except BaseException:
            process_ids.close()
            raise
        self._process_ids = process_ids

    def warm_up(self, jobs: Iterable[tuple[bytes, GuardLimits, tuple[Algorithm, ...]]]) -> None:
        """Run jobs once in every process so imports and JIT caches are loaded before traffic.

        Blocking (call it before the event loop runs). The jobs are kept: a rebuilt pool is
        warmed with them again before it takes uploads.
        """
        self._warm_jobs = list(jobs)
        if self._executor is None:
            return
        futures = [self._executor.submit(self._job, *job) for job in self._warm_jobs]
        concurrent.futures.wait(futures)

    async def hash(
        self, data: bytes, limits: GuardLimits, algorithms: tuple[Algorithm, ...]
    ) -> HashJobResult:
        """Hash one upload with the retry policy: :meth:`run`, then once more, alone, if the
        failure may have been a neighbour's.

        A process that dies (or is killed because a neighbour ran out of time) takes every job
        running in the pool with it, most of them innocent: such a job (HashWorkerCrashed) runs
        again with no other job beside it, so only an input that fails by itself is reported.
        A timeout is the image's own (not retried) unless ``retry_timeouts`` is set and other
        processes ran. Raises what :meth:`run` raises; the error's ``attempts`` is 1 or 2."""
        retried: tuple[type[PipelineError], ...] = (HashWorkerCrashed,)
        if self._retry_timeouts and self.processes > 1:
            retried = (HashWorkerCrashed, HashTimedOut)
        try:
            return await self.run(data, limits, algorithms)
        except retried:
            pass
        try:
            return await self._attempt(data, limits, algorithms, alone=True)
        except PipelineError as exc:
            exc.attempts = 2
            raise

    async def run(
        self, data: bytes, limits: GuardLimits, algorithms: tuple[Algorithm, ...]
    ) -> HashJobResult:
        """Hash one upload off the event loop, once. Raises what the job raises (ImageRejected),
        :class:`HashWorkerCrashed` when its process died or the pool was rebuilt under it (or
        cannot be started), or :class:`HashTimedOut` after ``timeout_seconds`` of running (the
        pool is rebuilt first in both cases). Cancelling the caller cancels the job's wait."""
        return await self._attempt(data, limits, algorithms, alone=False)

    async def _attempt(
        self, data: bytes, limits: GuardLimits, algorithms: tuple[Algorithm, ...], *, alone: bool
    ) -> HashJobResult:
        """One run, waiting first for a process (and, ``alone``, for every other job to end)."""
        queued = True
        self.waiting += 1
        try:
            async with self._gate.turn(alone):
                await self._slots.acquire()
                queued = False
                self.waiting -= 1
                self.running += 1
                try:
                    if self.processes == 0:
                        return self._job(data, limits, algorithms)
                    return await self._run_in_process(data, limits, algorithms)
                finally:
                    self.running -= 1
                    self._slots.release()
        finally:
            if queued:
                self.waiting -= 1

    async def _run_in_process(
        self, data: bytes, limits: GuardLimits, algorithms: tuple[Algorithm, ...]
    ) -> HashJobResult:
        executor = await self._warm_executor()
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(executor, self._job, data, limits, algorithms), self._timeout
            )
        except TimeoutError:
            self._discard(executor)
            raise HashTimedOut(f"hashing took longer than {self._timeout}s") from None
        except (BrokenProcessPool, MemoryError) as exc:
            # A broken pool has already terminated its processes itself: none to kill here.
            self._discard(executor, kill=isinstance(exc, MemoryError))
            raise HashWorkerCrashed(f"hashing process failed: {type(exc).__name__}") from None
        except asyncio.CancelledError:
            if _being_cancelled():
                raise  # we are being cancelled (shutdown): let it propagate
            # The executor cancelled our job (a rebuild for another job shut it down). That is a
            # BaseException, which per-upload error handling does not catch: turn it into the
            # pipeline error it is.
            raise HashWorkerCrashed("hashing job cancelled by a pool rebuild") from None

    async def _warm_executor(self) -> concurrent.futures.ProcessPoolExecutor:
        """The current executor once warm, starting (and warming) a new one if there is none.

        Raises HashWorkerCrashed when processes cannot be started or fail while warming.
        """
        while True:
            if self._executor is None:
                try:
                    self.start()
                except Exception as exc:
                    self._set_broken(f"cannot start hashing processes: {type(exc).__name__}")
                    raise HashWorkerCrashed("hashing pool cannot be started") from None
                assert self._executor is not None
                self._warming = asyncio.ensure_future(self._warm(self._executor))
            executor, warming = self._executor, self._warming
            if warming is not None:
                # Shielded: one waiter being cancelled must not cancel the warm-up for all.
                await asyncio.shield(warming)
            if self._executor is executor:
                return executor

    async def _warm(self, executor: concurrent.futures.ProcessPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        calls: list[asyncio.Future[object]] = [
            loop.run_in_executor(executor, self._job, *job) for job in self._warm_jobs
        ]
        if not calls:
            calls = [loop.run_in_executor(executor, ping) for _ in range(self.processes)]
        try:
            # Generous: this is process start-up and imports, not an upload's hashing.
            await asyncio.wait_for(asyncio.gather(*calls), max(60.0, 4 * self._timeout))
        except Exception as exc:
            self._discard(executor, kill=not isinstance(exc, BrokenProcessPool))
            self._set_broken(f"hashing processes fail to start: {type(exc).__name__}")
            raise HashWorkerCrashed("hashing pool failed to start") from None
        finally:
            if self._executor is executor or self._executor is None:
                self._warming = None
        self._set_broken(None)

    def _set_broken(self, reason: str | None) -> None:
        if reason != self.broken_reason:
            self.broken_reason = reason
            if self._on_broken is not None:
                self._on_broken(reason)

    def _discard(
        self, failed: concurrent.futures.ProcessPoolExecutor, *, kill: bool = True
    ) -> None:
        """Kill ``failed``'s processes (unless another job already replaced it); the next job
        starts and warms a fresh pool.

        ``kill=False`` when the executor is broken: it terminates its processes itself, and one
        that died on its own may have left its PID free for another process to reuse.
        """
        if self._executor is not failed:
            return
        process_ids, self._executor, self._process_ids = self._process_ids, None, None
        assert process_ids is not None
        # A hung decoder cannot be cancelled; its process is killed with the pool. Jobs running
        # in the other processes fail with BrokenProcessPool and are retried by the caller. Not
        # waited for here (this runs on the event loop): SIGKILL cannot be ignored.
        if kill:
            process_ids.kill()
        failed.shutdown(wait=False, cancel_futures=True)
        process_ids.close()
        self.rebuilds += 1

    def close(self, grace_seconds: float = 5.0) -> None:
        """Stop the worker processes: let running jobs finish for up to ``grace_seconds``, then
        kill what is left (a hung decoder must not hang shutdown, e.g. Ctrl-C) and wait up to
        2 s more for it to be gone. Blocking."""
        executor, self._executor = self._executor, None
        process_ids, self._process_ids = self._process_ids, None
        if executor is None:
            return
        assert process_ids is not None
        try:
            executor.shutdown(wait=False, cancel_futures=True)
            if not process_ids.wait_gone(grace_seconds):
                process_ids.kill()
                process_ids.wait_gone(2.0)
        finally:
            process_ids.close()


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
