"""What runs inside a hashing process, and how the pool learns which processes are its own.

Owns the job sent to worker processes (:func:`hash_job`: one guarded decode, every hash, stage
timings; a pure function over bytes), the process initializer (Ctrl-C ignored, PID reported,
address space capped) and :class:`ProcessIds`, the pool's side of that PID report.
Must not: hold image bytes beyond one call, or log them.

``concurrent.futures`` has no public way to reach an executor's processes, and a hung decoder
cannot be cancelled, only killed: each process reports its own PID through a pipe, and the pool
signals those PIDs itself. Public APIs only.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext

from pipeline.core.guard import DecodedImage, GuardLimits, decode
from pipeline.core.hashing import View, upload_hashes, upload_views
from pipeline.core.types import Algorithm
from pipeline.core.video import FrameHashes, animation_samples, video_format
from pipeline.core.videolimits import VideoLimits


@dataclass(frozen=True, slots=True)
class HashJobResult:
    """Hashes of one image with its decoded facts and where the time went (seconds).

    ``content_digest`` tells one file from another (the flood quarantine counts different
    files, not repeats); it is not a list hash and never leaves the worker."""

    hashes: dict[Algorithm, int]
    views: tuple[View, ...]
    format: str
    width: int
    height: int
    decode_seconds: float
    hash_seconds: float
    content_digest: bytes
    media: str = "image"
    """``image`` or ``video``."""
    frames: tuple[FrameHashes, ...] = ()
    """A video's sampled frames and their hashes (``views`` is empty for a video)."""
    duration_seconds: float = 0.0


def content_digest(data: bytes) -> bytes:
    """A 128-bit digest of the upload's bytes: which file it is, cheaply (BLAKE2b)."""
    return hashlib.blake2b(data, digest_size=16).digest()


#: Address-space cap of each hashing process. The pixel cap bounds what a legitimate upload
#: needs (64 MP of 8-bit grayscale plus Pillow's working buffers stays far below this); a decoder
#: that misbehaves on hostile input fails with MemoryError instead of taking the host down.
HASH_PROCESS_MEMORY_BYTES = 4 * 1024**3


def hash_job(data: bytes, limits: GuardLimits, algorithms: tuple[Algorithm, ...]) -> HashJobResult:
    """Guard, decode and hash ``data``; raises ImageRejected for refused images.

    Runs in a pool process: the production path of every upload, worker and CLI alike, and the
    one the golden-value tests pin. Decode time (seconds) includes the guard checks; hash time
    covers the exact digests of the original bytes and the perceptual hashes of the decoded
    image (:func:`~pipeline.core.hashing.upload_hashes`, in canonical algorithm order).
    """
    start = time.perf_counter()
    if limits.video is not None and video_format(data) is not None:
        return _video_job(data, limits, algorithms, start)
    decoded = decode(data, limits)
    decoded_at = time.perf_counter()
    hashes, views = upload_hashes(data, decoded, algorithms)
    if decoded.format == "GIF" and decoded.frames > 1 and limits.video is not None:
        return _animation_job(data, decoded, limits.video, algorithms, hashes, views, start)
    done = time.perf_counter()
    return HashJobResult(
        hashes=hashes,
        views=views,
        format=decoded.format,
        width=decoded.width,
        height=decoded.height,
        decode_seconds=decoded_at - start,
        hash_seconds=done - decoded_at,
        content_digest=content_digest(data),
    )


def _animation_job(
    data: bytes,
    decoded: DecodedImage,
    video: VideoLimits,
    algorithms: tuple[Algorithm, ...],
    hashes: dict[Algorithm, int],
    views: tuple[View, ...],
    start: float,
) -> HashJobResult:
    """An animated GIF as a video: its first frame (already hashed, ``views``) at 0 s, then
    the frame shown at each sampling interval (:func:`pipeline.core.video.animation_samples`),
    each hashed as a still."""
    frames = [FrameHashes(0.0, True, views)]
    for seconds, gray in animation_samples(data, video.sample_interval_seconds):
        frame = DecodedImage(gray, "GIF", decoded.width, decoded.height, 1)
        frames.append(FrameHashes(seconds, False, upload_views(frame, algorithms)))
    return HashJobResult(
        hashes=hashes,
        views=(),
        format="GIF",
        width=decoded.width,
        height=decoded.height,
        decode_seconds=time.perf_counter() - start,
        hash_seconds=0.0,
        content_digest=content_digest(data),
        media="video",
        frames=tuple(frames),
        duration_seconds=frames[-1].seconds,  # the last sampled frame: the end is not read
    )


def _video_job(
    data: bytes, limits: GuardLimits, algorithms: tuple[Algorithm, ...], start: float
) -> HashJobResult:
    """A video upload's job: :func:`pipeline.videodecode.hash_video` (guard, sampling, hashes)
    under the same process caps as an image's. Its time is all reported as decode time: the
    decoder and the hashes interleave frame by frame."""
    from pipeline.videodecode import hash_video

    assert limits.video is not None
    video = hash_video(data, limits.video, algorithms, limits.draft_size)
    return HashJobResult(
        hashes=video.hashes,
        views=(),
        format=video.format,
        width=video.width,
        height=video.height,
        decode_seconds=time.perf_counter() - start,
        hash_seconds=0.0,
        content_digest=content_digest(data),
        media="video",
        frames=video.frames,
        duration_seconds=video.duration_seconds,
    )


def init_process(max_bytes: int | None, report: Connection) -> None:
    """Pool initializer: ignore Ctrl-C, report this process's PID and cap its address space.

    Ctrl-C reaches the whole process group; the worker shuts its pool down itself, so a hashing
    process that raised KeyboardInterrupt would only print a traceback per process. The PID goes
    to the executor's :class:`ProcessIds` (so a hung job can be killed) before the memory cap is
    set, so the cap cannot fail the report. The memory cap applies on Linux and is skipped where
    rlimits are unsupported.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        report.send(os.getpid())  # one small message: a single atomic write, no thread, no lock
    except OSError:
        pass  # the pool was discarded while this process started; it is being stopped
    finally:
        report.close()
    if max_bytes is None:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without rlimits
        pass


#: The job a pool runs; :func:`hash_job` in production (tests pass other top-level functions).
HashJob = Callable[[bytes, GuardLimits, tuple[Algorithm, ...]], HashJobResult]


def ping() -> None:
    """A no-op job: running it makes a fresh process import this module (and the core)."""


class ProcessIds:
    """The PIDs of one executor's worker processes, as each reports its own from the initializer.

    ``ProcessPoolExecutor`` keeps its processes private, and ``multiprocessing.active_children()``
    lists every process this process started (other executors', a discarded pool's), so neither
    says which processes to kill. Each process of this executor sends ``os.getpid()`` down a
    one-way pipe of its own context instead (not a queue: ``Queue`` starts a feeder thread in
    each process, under the memory cap, and both queues take a lock shared by the processes,
    which one killed while holding it would keep from the others). Processes start on demand,
    so the pipe is drained every time the PIDs are needed.

    PID reuse: only PIDs that this executor's processes reported are signalled; one seen gone
    (or owned by another user) is forgotten, never signalled again. Forkserver children are not
    this process's children, so ``waitpid`` cannot wait for them: :meth:`wait_gone` polls.
    Used from one thread at a time (the event loop, or the thread that closes the pool).
    """

    def __init__(self, context: BaseContext) -> None:
        self._reader, self.report = context.Pipe(duplex=False)
        self._pids: set[int] = set()

    def alive(self) -> set[int]:
        """PIDs reported so far whose processes still exist."""
        try:
            while self._reader.poll():
                self._pids.add(self._reader.recv())
        except (OSError, EOFError):  # pragma: no cover - closed: no process can report any more
            pass
        self._pids = {pid for pid in self._pids if process_exists(pid)}
        return set(self._pids)

    def kill(self) -> None:
        """SIGKILL every reported process that still exists (a hung decoder cannot be stopped
        otherwise)."""
        for pid in self.alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self._pids.discard(pid)

    def wait_gone(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every reported process to be gone; False if some remain."""
        deadline = time.monotonic() + seconds
        pause = 0.002
        while self.alive():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(2 * pause, 0.05)
        return True

    def close(self) -> None:
        self._reader.close()
        self.report.close()


def process_exists(pid: int) -> bool:
    """Whether ``pid`` is a process this user may signal (a zombie counts until reaped)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False  # gone, or the PID now belongs to another user's process
    return True
