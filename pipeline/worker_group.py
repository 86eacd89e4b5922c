"""``pipeline worker --workers N``: N independent worker processes on one host, one command.

Owns the parent process: it starts N children, each a whole ``pipeline worker`` in a fresh
interpreter (its own Faust app and event loop, consumer-group member, hashing pool, web server
and metrics; nothing shared, so one event loop no longer sits in front of every core), forwards
SIGTERM/SIGINT to them, and restarts a child that exits on its own. Must not screen anything
itself, nor hold Kafka clients.

What each child gets (on top of the parent's environment):

- ``PIPELINE_WEB_PORT`` = the parent's port + i (i = 0..N-1): ``/livez``, ``/readyz`` and
  ``/metrics`` per child, each a Prometheus target of its own;
- ``PIPELINE_WORKER_ID`` = the parent's worker id + ``-i`` (names its outputs and log lines);
- ``PIPELINE_LOG_LEVEL`` = the parent's (which ``pipeline --log-level`` may have set);
- ``PIPELINE_HASH_PROCESSES`` = the parent's value if it was set, else the host's cores divided
  among the children (at least 1 each), so N workers do not start N pools of every core.

Children run in their own sessions, so a Ctrl-C in a terminal reaches the parent alone, which
stops them in order; each also asks the kernel for SIGTERM should the parent die without doing
so (Linux ``PR_SET_PDEATHSIG``), so no orphaned worker keeps a port or a group membership.

Restart policy (chosen over "one child's death stops the host": a worker killed by the OOM
killer or a crash should not take its healthy siblings, and their partitions, with it): a child
that exits while the group is running is restarted after a capped, jittered backoff. A child
that dies within :data:`HEALTHY_RUN_SECONDS` of its start counts as a quick failure; after
:data:`MAX_QUICK_FAILURES` of them in a row (a bad setting, a port taken) the parent stops the
others and exits 1, so the host's supervisor sees the failure instead of a silent restart loop.
On SIGTERM the parent sends SIGTERM to every child, waits up to :data:`STOP_GRACE_SECONDS` for
each to finish its in-flight uploads and commit, SIGKILLs what is left, and exits 0 if every
child stopped cleanly, else 1.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

from pipeline.backoff import backoff_seconds
from pipeline.config import Settings
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

#: A child that ran at least this long before it exited had started fine: its exit is not part
#: of a crash loop.
HEALTHY_RUN_SECONDS = 60.0
#: Quick failures in a row (of one child) after which the parent gives up and exits 1.
MAX_QUICK_FAILURES = 5
#: Longest wait before a restart.
RESTART_BACKOFF_MAX_SECONDS = 30.0
#: How long a child may take to stop after SIGTERM before it is killed (in-flight uploads are
#: screened and committed, the consumer group left).
STOP_GRACE_SECONDS = 60.0
#: How often the parent looks at its children.
POLL_SECONDS = 0.2
#: Linux prctl option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def child_environment(
    settings: Settings, index: int, count: int, base: Mapping[str, str]
) -> dict[str, str]:
    """The environment of child ``index`` of ``count`` (see the module docstring). Pure."""
    env = dict(base)
    env["PIPELINE_WEB_PORT"] = str(settings.web_port + index)
    env["PIPELINE_WORKER_ID"] = f"{settings.worker_id}-{index}"
    env["PIPELINE_LOG_LEVEL"] = settings.log_level.value  # `pipeline --log-level` too
    if "hash_processes" not in settings.model_fields_set:
        env["PIPELINE_HASH_PROCESSES"] = str(max(1, (os.cpu_count() or 1) // count))
    return env


def check_group(settings: Settings, count: int) -> None:
    """Raise :class:`ConfigError` when ``count`` workers cannot run with these settings."""
    if count < 1:
        raise ConfigError("--workers must be at least 1")
    if count > 1 and settings.embedded:
        raise ConfigError(
            "--workers N needs PIPELINE_BOOTSTRAP_SERVERS: each worker would start its own "
            "embedded broker, and they would not share the uploads"
        )
    if count > 1 and settings.web_port == 0:
        raise ConfigError("--workers N needs a fixed PIPELINE_WEB_PORT (children use PORT+i)")
    if settings.web_port + count - 1 > 65535:
        raise ConfigError(f"PIPELINE_WEB_PORT + {count - 1} is past 65535")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask for SIGTERM when the parent dies (Linux); elsewhere nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    """One worker process of the group and its restart record."""

    index: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)


class WorkerGroup:
    """Starts, watches and stops the children; :meth:`run` until stopped."""

    def __init__(
        self,
        settings: Settings,
        count: int,
        *,
        command: Sequence[str] | None = None,
        environment: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        restart_backoff_base_seconds: float = 1.0,
    ) -> None:
        check_group(settings, count)
        base = dict(os.environ if environment is None else environment)
        self.command = list(command or [sys.executable, "-m", "pipeline", "worker"])
        self.children = [
            Child(i, child_environment(settings, i, count, base)) for i in range(count)
        ]
        self._clock = clock
        self._backoff_base = restart_backoff_base_seconds
        self._stopping = False

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        """Signal handler: stop the group (the run loop sends SIGTERM to every child)."""
        if not self._stopping:
            log.info("worker group: %s received, stopping %d worker(s)",
                     signal.Signals(signum).name, len(self.children))  # fmt: skip
        self._stopping = True

    def run(self, *, handle_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT (0 if every child then stopped cleanly, else 1) or until a
        child fails quickly too often (1). Without ``handle_signals`` (tests, or a caller
        outside the main thread) only :meth:`request_stop` stops it."""
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        previous = {signum: signal.signal(signum, self.request_stop) for signum in signals}
        try:
            for child in self.children:
                self._start(child)
            code = self._watch()
        finally:
            clean = self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return code if code else (0 if clean else 1)

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            self.command,
            env=child.env,
            start_new_session=True,  # a terminal's Ctrl-C reaches the parent alone
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, no locks taken
        )
        child.started_at = self._clock()
        child.restart_at = None
        log.info("worker group: started worker %d (pid %d, web port %s)",
                 child.index, child.process.pid, child.env["PIPELINE_WEB_PORT"])  # fmt: skip

    def _watch(self) -> int:
        """Poll the children until asked to stop (0) or a crash loop (1)."""
        while not self._stopping:
            now = self._clock()
            for child in self.children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self._start(child)
                    continue
                assert child.process is not None
                code = child.process.poll()
                if code is None:
                    continue
                child.exit_codes.append(code)
                ran = now - child.started_at
                child.quick_failures = child.quick_failures + 1 if ran < HEALTHY_RUN_SECONDS else 0
                if child.quick_failures >= MAX_QUICK_FAILURES:
                    log.error(
                        "worker group: worker %d exited %d times within %.0f s of its start "
                        "(last exit code %d); stopping the group",
                        child.index, child.quick_failures, HEALTHY_RUN_SECONDS, code,
                    )  # fmt: skip
                    return 1
                delay = backoff_seconds(
                    child.quick_failures, self._backoff_base, RESTART_BACKOFF_MAX_SECONDS
                )
                child.restart_at = now + delay
                log.warning(
                    "worker group: worker %d (pid %d) exited with code %d after %.0f s; "
                    "restarting in %.1f s",
                    child.index, child.process.pid, code, ran, delay,
                )  # fmt: skip
            time.sleep(POLL_SECONDS)
        return 0

    def _stop_all(self) -> bool:
        """SIGTERM every running child, wait for them (SIGKILL after the grace period);
        True if each exited with code 0."""
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = self._clock() + STOP_GRACE_SECONDS
        clean = True
        for process in running:
            try:
                code = process.wait(max(0.0, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                log.error("worker group: pid %d did not stop in %.0f s; killing it",
                          process.pid, STOP_GRACE_SECONDS)  # fmt: skip
                process.kill()
                process.wait()
                code = -signal.SIGKILL
            clean = clean and code == 0
        return clean


def run_worker_group(settings: Settings, count: int) -> int:
    """Run ``count`` workers (see the module docstring); the exit code."""
    return WorkerGroup(settings, count).run()
