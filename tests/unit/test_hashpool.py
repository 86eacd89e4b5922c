"""The hashing pool with real worker processes: the timeout counts running time only, one
image that runs too long neither fails its neighbours nor lets a CancelledError escape, and the
retry policy the worker and the CLI share reports only the culprit of a crash. A hung job's
process is really killed (its PID is gone), also in a process started on demand, using only
public APIs of ``concurrent.futures`` and ``multiprocessing``.

The job here sleeps for the number of seconds its bytes spell, so timings are explicit; it is a
top-level function, as the pool requires (it is pickled by reference into the processes).
"""

from __future__ import annotations

import ast
import asyncio
import base64
import inspect
import json
import os
import time
from pathlib import Path

import pytest

from pipeline import hashpool, hashprocess
from pipeline.adapters.fetch import Fetcher
from pipeline.config import Settings
from pipeline.core.guard import GuardLimits
from pipeline.core.matching import Matcher
from pipeline.fetch_policy import FetchLimits
from pipeline.hashpool import HashPool, HashTimedOut, HashWorkerCrashed
from pipeline.hashprocess import HashJobResult
from pipeline.metrics import PipelineMetrics
from pipeline.models import SourceRef
from pipeline.screening import Screener

LIMITS = GuardLimits()


def sleep_job(data: bytes, limits: GuardLimits, algorithms: tuple[object, ...]) -> HashJobResult:
    seconds = float(data)
    time.sleep(seconds)
    return HashJobResult(
        hashes={},
        views=(),
        format="PNG",
        width=1,
        height=1,
        decode_seconds=0.0,
        hash_seconds=seconds,
        content_digest=b"",
    )


def crash_or_sleep_job(
    data: bytes, limits: GuardLimits, algorithms: tuple[object, ...]
) -> HashJobResult:
    if data == b"crash":
        os._exit(1)
    return sleep_job(data, limits, algorithms)


def pid_job(data: bytes, limits: GuardLimits, algorithms: tuple[object, ...]) -> HashJobResult:
    """``b"<seconds>"`` or ``b"<seconds>|<file>"``: first writes this process's PID to the file
    (atomically), then sleeps; the result's width is the PID."""
    seconds, _, path = data.decode().partition("|")
    if path:
        Path(path + ".tmp").write_text(str(os.getpid()))
        os.replace(path + ".tmp", path)
    time.sleep(float(seconds))
    return HashJobResult(
        hashes={},
        views=(),
        format="PNG",
        width=os.getpid(),
        height=1,
        decode_seconds=0.0,
        hash_seconds=0.0,
        content_digest=b"",
    )


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


_COLD = [True]  # per process: the first job in a fresh process pays for "imports"


def cold_start_job(
    data: bytes, limits: GuardLimits, algorithms: tuple[object, ...]
) -> HashJobResult:
    if _COLD[0]:
        time.sleep(2.0)
        _COLD[0] = False
    return sleep_job(data, limits, algorithms)


def warm_pool(
    processes: int, timeout: float, job: object = sleep_job, retry_timeouts: bool = False
) -> HashPool:
    pool = HashPool(
        processes,
        timeout_seconds=timeout,
        job=job,  # type: ignore[arg-type]
        retry_timeouts=retry_timeouts,
    )
    pool.start()
    pool.warm_up([(b"0", LIMITS, ())] * processes)
    return pool


@pytest.mark.timeout(60)
def test_waiting_for_a_free_process_does_not_count_against_the_timeout() -> None:
    pool = warm_pool(1, timeout=1.5)
    try:

        async def main() -> list[HashJobResult]:
            return await asyncio.gather(*(pool.run(b"0.6", LIMITS, ()) for _ in range(4)))

        results = asyncio.run(main())  # 2.4 s in all, 0.6 s each: no job may time out
    finally:
        pool.close()
    assert [r.hash_seconds for r in results] == [0.6] * 4
    assert pool.in_flight == 0
    assert pool.rebuilds == 0


@pytest.mark.timeout(120)
def test_a_timeout_rebuild_raises_only_pipeline_errors_in_other_jobs() -> None:
    pool = warm_pool(2, timeout=3.0)
    try:

        async def main() -> list[object]:
            jobs = [pool.run(b"30", LIMITS, ())] + [pool.run(b"0.8", LIMITS, ()) for _ in range(6)]
            return await asyncio.gather(*jobs, return_exceptions=True)

        results = asyncio.run(main())
    finally:
        pool.close()
    assert isinstance(results[0], HashTimedOut)
    for result in results[1:]:
        # Never CancelledError (a BaseException that per-upload handling does not catch).
        assert isinstance(result, HashJobResult | HashWorkerCrashed), repr(result)
    assert sum(isinstance(r, HashJobResult) for r in results) >= 3
    assert pool.rebuilds == 1
    assert pool.in_flight == 0
    assert pool.broken_reason is None


@pytest.mark.timeout(120)
def test_a_crash_is_run_again_alone_so_only_its_culprit_fails() -> None:
    # The crash kills the jobs running beside it; run again together, the culprit would kill
    # them a second time. Each runs once more alone: only the culprit fails, after two runs.
    pool = warm_pool(2, timeout=20.0, job=crash_or_sleep_job)
    try:

        async def main() -> list[object]:
            jobs = [pool.hash(b"0.3", LIMITS, ()), pool.hash(b"crash", LIMITS, ())]
            jobs += [pool.hash(b"0.3", LIMITS, ()) for _ in range(4)]
            return await asyncio.gather(*jobs, return_exceptions=True)

        results = asyncio.run(main())
    finally:
        pool.close()
    crashed = results.pop(1)
    assert isinstance(crashed, HashWorkerCrashed)
    assert crashed.attempts == 2
    assert all(isinstance(r, HashJobResult) for r in results), results
    assert pool.in_flight == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("retry_timeouts", "attempts"), [(False, 1), (True, 2)])
def test_a_timeout_is_run_again_only_where_timeouts_are_retried(
    retry_timeouts: bool, attempts: int
) -> None:
    pool = warm_pool(2, timeout=1.0, retry_timeouts=retry_timeouts)
    try:
        with pytest.raises(HashTimedOut) as timed_out:
            asyncio.run(pool.hash(b"30", LIMITS, ()))
    finally:
        pool.close()
    assert timed_out.value.attempts == attempts
    assert pool.rebuilds == attempts


@pytest.mark.timeout(60)
def test_starting_a_rebuilt_pool_does_not_count_against_the_timeout() -> None:
    pool = HashPool(1, timeout_seconds=1.5, job=cold_start_job)
    pool.start()
    pool.warm_up([(b"0", LIMITS, ())])
    try:

        async def main() -> tuple[object, ...]:
            slow = await asyncio.gather(pool.run(b"30", LIMITS, ()), return_exceptions=True)
            # The next job runs in a fresh process whose first job takes 2 s more than the
            # 1.5 s timeout: the pool must be warmed with the warm-up jobs before it counts.
            return (*slow, await pool.run(b"0.2", LIMITS, ()))

        timed_out, result = asyncio.run(main())
    finally:
        pool.close()
    assert isinstance(timed_out, HashTimedOut)
    assert isinstance(result, HashJobResult)
    assert pool.rebuilds == 1


def inline(upload_id: str, seconds: str) -> bytes:
    data = base64.b64encode(seconds.encode()).decode()
    return json.dumps(
        {"upload_id": upload_id, "content": {"kind": "inline", "data_base64": data}}
    ).encode()


@pytest.mark.timeout(120)
def test_one_slow_image_fails_alone_and_innocent_neighbours_are_screened() -> None:
    """With PIPELINE_ON_ERROR=block, a batch failing with the slow image would block innocent
    uploads: only the slow one may fail (hash_timeout, one attempt); jobs killed with it as
    collateral are retried."""
    pool = warm_pool(2, timeout=3.0)
    settings = Settings(bootstrap_servers="unused:9092", worker_id="w1", on_error="block")
    screener = Screener(
        settings,
        matcher=Matcher(),
        fetcher=Fetcher(FetchLimits(max_bytes=1000)),
        pool=pool,
        metrics=PipelineMetrics(),
        limits=LIMITS,
    )
    events = [inline("slow", "30")] + [inline(f"quick-{i}", "0.8") for i in range(6)]
    try:

        async def main() -> list[object]:
            return await asyncio.gather(
                *(
                    screener.screen(value, None, SourceRef(topic="uploads", partition=0, offset=i))
                    for i, value in enumerate(events)
                )
            )

        outcomes = asyncio.run(main())
    finally:
        pool.close()
    by_id = {o.verdict.upload_id: o for o in outcomes}  # type: ignore[attr-defined]
    slow = by_id.pop("slow")
    assert slow.verdict.error is not None
    assert slow.verdict.error.reason == "hash_timeout"
    assert slow.dead_letter is not None
    assert slow.dead_letter.attempts == 1
    assert {o.verdict.action.value for o in by_id.values()} == {"allow"}, [
        o.verdict.error for o in by_id.values()
    ]


@pytest.mark.timeout(60)
def test_close_does_not_wait_for_a_hung_job() -> None:
    pool = warm_pool(1, timeout=120)

    async def start_hung_job() -> None:
        job = asyncio.ensure_future(pool.run(b"600", LIMITS, ()))
        await asyncio.sleep(0.5)  # the job is running in its process
        job.cancel()

    asyncio.run(start_hung_job())
    started = time.monotonic()
    pool.close(grace_seconds=0.5)
    assert time.monotonic() - started < 10


@pytest.mark.timeout(60)
def test_a_timed_out_job_s_process_is_killed(tmp_path: Path) -> None:
    # 3 s: long enough for the job to record its PID first even on a loaded machine.
    pool = warm_pool(1, timeout=3.0, job=pid_job)
    pid_file = tmp_path / "hung.pid"
    try:
        with pytest.raises(HashTimedOut):
            asyncio.run(pool.run(f"600|{pid_file}".encode(), LIMITS, ()))
        pid = int(pid_file.read_text())
        # Killed by the pool, not merely abandoned: the PID is gone (the pool does not wait for
        # it on the event loop, so allow a moment for the kill to land).
        assert gone_within(pid, 5.0), f"hung hashing process {pid} still runs"
        assert pool.rebuilds == 1
    finally:
        pool.close()


@pytest.mark.timeout(90)
def test_close_kills_a_hung_job_in_a_process_started_on_demand(tmp_path: Path) -> None:
    # Warmed with one job, a two-process pool has one process; the second starts only when two
    # jobs run at once, after the pool started: its PID is learnt late and must be killed too.
    pool = HashPool(2, timeout_seconds=120, job=pid_job)  # type: ignore[arg-type]
    pool.start()
    pool.warm_up([(b"0", LIMITS, ())])
    pid_file = tmp_path / "hung.pid"

    async def start_hung_job() -> int:
        # The quick job outlasts the second process's start even on a loaded machine; were it
        # done first, its idle process would take the hung job too.
        quick = asyncio.ensure_future(pool.run(b"4.0", LIMITS, ()))
        hung = asyncio.ensure_future(pool.run(f"600|{pid_file}".encode(), LIMITS, ()))
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        hung.cancel()  # cancels the wait, not the process
        return (await quick).width

    try:
        quick_pid = asyncio.run(start_hung_job())
    finally:
        started = time.monotonic()
        pool.close(grace_seconds=0.5)
        closed_in = time.monotonic() - started
    hung_pid = int(pid_file.read_text())
    assert hung_pid != quick_pid, "the hung job did not run in a process started on demand"
    assert closed_in < 10
    # close() waits for what it kills: both processes are gone when it returns.
    assert not exists(hung_pid), f"hung hashing process {hung_pid} survived close()"
    assert not exists(quick_pid)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_the_pool_uses_no_private_attribute_of_other_objects() -> None:
    """The stdlib's private attributes (``ProcessPoolExecutor._processes``) change without
    notice between Python versions: the module may touch ``self._x`` only, import no private
    name from another module and look up no private name by string."""
    found: list[str] = []
    for module in (hashpool, hashprocess):
        found += _private_uses(ast.parse(inspect.getsource(module)), module.__name__)
    assert not found, found


def _private_uses(tree: ast.Module, module: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append(f"{module} line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in {"getattr", "setattr", "hasattr", "delattr"}:
                names = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
                if not names or any(not isinstance(n, str) or _private(n) for n in names):
                    found.append(f"{module} line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom):
            imported = node.module or ""
            if any(_private(part) for part in imported.split(".")) or any(
                _private(alias.name) for alias in node.names
            ):
                found.append(f"{module} line {node.lineno}: from {imported} import ...")
    return found
