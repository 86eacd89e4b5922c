"""The demo: an embedded broker, a worker process, the demo list and demo uploads; and demo
traffic (the demo list, then demo uploads at a steady rate) for docker-compose's producer.

Owns starting and stopping what the demo runs (:func:`running_demo`: the broker, its topics and
a ``pipeline worker`` process told the broker's address and its quirks by environment, since
it cannot tell the broker is embedded), judging the worker ready by its ``/readyz``, refusing a
web port another demo or worker holds, and the demo uploads. The list and images themselves
are :mod:`pipeline.demo.hashlist`'s.

Must not print, install signal handlers or choose exit codes (the ``demo`` command's job).
Raises :class:`~pipeline.errors.ConfigError` for a taken port or a worker that does not get
ready, and what publishing and submitting raise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pipeline.adapters.delivery import Delivery, DeliveryReport
from pipeline.application.hashlists import publish_lists
from pipeline.application.uploads import inline_event, send_events
from pipeline.config import EMBEDDED_FETCH_MAX_WAIT_MS, EMBEDDED_SESSION_TIMEOUT_SECONDS, Settings
from pipeline.errors import ConfigError
from pipeline.models import UploadEvent

#: How long the worker may take to be ready, and the demo's verdicts to arrive, in seconds.
READY_TIMEOUT_SECONDS = 60.0
VERDICT_WAIT_SECONDS = 60.0
#: How long a stopping worker gets before it is killed, in seconds.
WORKER_STOP_SECONDS = 20.0


def publish_demo_list(bootstrap: str, settings: Settings) -> int:
    """Publish the bundled demo hash list (generated images); returns the records delivered.
    Raises what :func:`~pipeline.application.hashlists.publish_lists` raises."""
    from pipeline.demo.hashlist import DEMO_LIST, demo_entries

    return publish_lists(bootstrap, settings, [DEMO_LIST], demo_entries())


def demo_events() -> list[UploadEvent]:
    """The demo uploads as events, ``demo-<file name>`` each: matching and non-matching."""
    from pipeline.demo.hashlist import demo_uploads

    return [inline_event(f"demo-{name}", name, data) for name, data in demo_uploads()]


def refuse_taken_port(host: str, port: int) -> None:
    """Raise :class:`ConfigError` when something already listens on ``host:port``.

    The demo judges its worker ready by ``/readyz`` on that port; with another demo or worker
    there, it would take that one's answer for its own worker's and then wait a minute for
    verdicts that never come. SO_REUSEADDR, as the worker's web server uses, so a port left
    in TIME_WAIT by a demo that just stopped is not mistaken for a taken one.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise ConfigError(
                f"{host}:{port} is in use (another pipeline demo or worker?): stop it, or set "
                "PIPELINE_WEB_PORT to a free port"
            ) from None


@dataclass(frozen=True)
class RunningDemo:
    """The demo's broker address, its worker process and the worker's web address."""

    bootstrap: str
    web_url: str
    worker: subprocess.Popen[bytes]

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Return once the worker's ``/readyz`` answers 200; raise :class:`ConfigError` when the
        worker exits first or is not ready within ``timeout`` seconds."""
        url = f"{self.web_url}/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise ConfigError(
                    f"the worker exited with {self.worker.returncode} before it was ready"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise ConfigError(f"the worker was not ready within {timeout:.0f}s ({url})")

    def wait(self) -> int:
        """Wait for the worker to exit; its exit code."""
        return self.worker.wait()


@contextmanager
def running_demo(settings: Settings) -> Iterator[RunningDemo]:
    """An embedded broker with the pipeline's topics and a worker process on it, stopped on
    exit (the worker gets WORKER_STOP_SECONDS to stop, then is killed). Raises
    :class:`ConfigError` at once when the web port is taken."""
    from pipeline.adapters.broker import EmbeddedBroker
    from pipeline.adapters.topics import ensure_topics, topic_specs

    if settings.web_port:
        refuse_taken_port(settings.web_host, settings.web_port)
    with EmbeddedBroker(settings.embedded_port) as broker:
        bootstrap = broker.bootstrap_servers
        ensure_topics(bootstrap, topic_specs(settings))
        env = {
            **os.environ,
            "PIPELINE_BOOTSTRAP_SERVERS": bootstrap,
            "PIPELINE_BROKER_FETCH_MAX_WAIT_MS": str(EMBEDDED_FETCH_MAX_WAIT_MS),
            # The worker sees bootstrap servers, so it cannot tell the broker is embedded.
            "PIPELINE_SESSION_TIMEOUT_SECONDS": str(EMBEDDED_SESSION_TIMEOUT_SECONDS),
        }
        worker = subprocess.Popen([sys.executable, "-m", "pipeline", "worker"], env=env)
        try:
            yield RunningDemo(bootstrap, f"http://{settings.web_host}:{settings.web_port}", worker)
        finally:
            _stop(worker)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()


def run_demo_traffic(
    bootstrap: str,
    settings: Settings,
    *,
    rate: float,
    count: int = 0,
    on_sent: Callable[[int], None] | None = None,
) -> DeliveryReport:
    """Produce demo uploads (fresh ids, cycling through the demo images) at ``rate`` per
    second until ``count`` are sent (0: until interrupted; Ctrl-C ends the run, not the
    report). ``on_sent`` is told the running total after each. Returns what the broker
    confirmed; raises :class:`~pipeline.adapters.topics.BrokerUnreachable` at the start."""
    from pipeline.demo.hashlist import demo_uploads

    delivery = Delivery.from_settings(bootstrap, settings)
    uploads = demo_uploads()
    sent = 0
    started = time.monotonic()
    try:
        while count == 0 or sent < count:
            name, data = uploads[sent % len(uploads)]
            event = inline_event(f"traffic-{uuid.uuid4().hex[:16]}", name, data)
            send_events(delivery, settings, [event])
            sent += 1
            if on_sent is not None:
                on_sent(sent)
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    except KeyboardInterrupt:
        pass
    return delivery.finish()
