"""Real parts for integration tests: worker processes, Kafka I/O, a webhook receiver, Alertmanager.

Everything here starts a real process or a real server on loopback and cleans it up. Nothing is
mocked: the worker is ``python -m pipeline worker`` against the test broker, the webhook receiver
is an HTTP server, Alertmanager is Debian's binary.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.adapters import hashlist_topic
from pipeline.adapters.broker import free_port
from pipeline.adapters.topics import ensure_topics, topic_specs
from pipeline.config import Settings
from pipeline.core.hashlist import HashListEntry, ListConfig, VpdqEntry

REPO = Path(__file__).resolve().parents[2]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET (HTTP errors are returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _read_to_highwater(consumer: KafkaConsumer, tp: TopicPartition) -> bool:
    high = consumer.highwater(tp)
    return high is not None and consumer.position(tp) >= high


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class Topics:
    """One test's own topic names and app id on the shared broker, so tests never interfere."""

    bootstrap: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def env(self) -> dict[str, str]:
        s = self.suffix
        return {
            "PIPELINE_BOOTSTRAP_SERVERS": self.bootstrap,
            "PIPELINE_APP_ID": f"screening-{s}",
            "PIPELINE_TOPIC_UPLOADS": f"uploads-{s}",
            "PIPELINE_TOPIC_VERDICTS": f"verdicts-{s}",
            "PIPELINE_TOPIC_BLOCKS": f"blocks-{s}",
            "PIPELINE_TOPIC_ALERTS": f"alerts-{s}",
            "PIPELINE_TOPIC_DEAD_LETTERS": f"dead-letters-{s}",
            "PIPELINE_TOPIC_HASHLISTS": f"hashlists-{s}",
        }

    def name(self, kind: str) -> str:
        return self.env[f"PIPELINE_TOPIC_{kind.upper().replace('-', '_')}"]

    def settings(self) -> Settings:
        return Settings(**{k.removeprefix("PIPELINE_").lower(): v for k, v in self.env.items()})

    def create(self) -> None:
        ensure_topics(self.bootstrap, topic_specs(self.settings()))


class KafkaIO:
    """Produce to and read whole topics of one test (kafka-python, no consumer group)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self._producer = KafkaProducer(bootstrap_servers=topics.bootstrap, acks="all")

    def close(self) -> None:
        self._producer.close(timeout=5)

    def send(self, kind: str, key: str | None, value: bytes | None) -> None:
        self._producer.send(
            self.topics.name(kind), key=key.encode() if key else None, value=value
        ).get(timeout=10)

    def upload(self, upload_id: str, data: bytes, **extra: Any) -> None:
        """Produce an inline upload event."""
        event = {
            "schema_version": 1,
            "upload_id": upload_id,
            "content": {"kind": "inline", "data_base64": base64.b64encode(data).decode()},
            "received_at": datetime.now(UTC).isoformat(),
            **extra,
        }
        self.send("uploads", upload_id, json.dumps(event).encode())

    def upload_event(self, event: dict[str, Any]) -> None:
        self.send("uploads", event.get("upload_id"), json.dumps(event).encode())

    def publish(
        self, config: ListConfig | None, entries: list[HashListEntry] | list[VpdqEntry]
    ) -> None:
        """Publish a list config and entries to the test's hash-list topic (then flush)."""
        configs = [] if config is None else [config]
        hashlist_topic.publish(self._producer, self.topics.name("hashlists"), configs, entries)
        self._producer.flush(timeout=120)

    def retract(self, list_name: str, entry_id: str) -> None:
        record = hashlist_topic.tombstone(hashlist_topic.entry_key(list_name, entry_id))
        topic = self.topics.name("hashlists")
        self._producer.send(topic, key=record.key, value=record.value).get(timeout=10)

    def read_all(self, kind: str, timeout: float = 1.0) -> list[dict[str, Any]]:
        """Every record of a topic so far, decoded from JSON (tombstones skipped)."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.topics.bootstrap, group_id=None, enable_auto_commit=False
        )
        try:
            topic = self.topics.name(kind)
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
            ]
            if not partitions:  # the topic does not exist (yet, or any more)
                return []
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            records: list[dict[str, Any]] = []
            idle_until = time.monotonic() + timeout
            # A topic that keeps growing (live traffic) never goes idle: stop instead once every
            # partition is read up to the high watermark that fetch responses report (correct on
            # tansu, unlike end_offsets()).
            while time.monotonic() < idle_until:
                batch = consumer.poll(timeout_ms=200)
                for part in batch.values():
                    for record in part:
                        if record.value is not None:
                            records.append(json.loads(record.value))
                if batch:
                    idle_until = time.monotonic() + timeout
                if all(_read_to_highwater(consumer, tp) for tp in partitions):
                    break
            return records
        finally:
            consumer.close()

    def wait_for(
        self, kind: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 60
    ) -> list[dict[str, Any]]:
        """Re-read ``kind`` until ``predicate(records)`` holds; returns the records."""
        seen: list[dict[str, Any]] = []

        def check() -> bool:
            nonlocal seen
            seen = self.read_all(kind, timeout=0.3)
            return predicate(seen)

        wait_until(check, timeout, interval=0.3, what=f"records on {kind}")
        return seen

    def verdicts_for(self, ids: set[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
        """The (last) verdict of every upload id, waiting until each has one."""
        records = self.wait_for("verdicts", lambda rs: ids <= {r["upload_id"] for r in rs}, timeout)
        return {r["upload_id"]: r for r in records if r["upload_id"] in ids}


class WorkerProcess:
    """``python -m pipeline worker`` in a subprocess with its own web port and log file."""

    def __init__(self, topics: Topics, log_dir: Path, **settings: str) -> None:
        self.web_port = free_port()
        self.name = settings.pop("worker_id", f"worker-{uuid.uuid4().hex[:6]}")
        self.env = {
            **os.environ,
            **topics.env,
            "PIPELINE_WORKER_ID": self.name,
            "PIPELINE_WEB_PORT": str(self.web_port),
            "PIPELINE_SESSION_TIMEOUT_SECONDS": "6",
            "PIPELINE_BROKER_FETCH_MAX_WAIT_MS": "50",  # tansu holds fetches (see config.py)
            "PIPELINE_HASH_PROCESSES": "1",
            "PIPELINE_FETCH_ATTEMPTS": "2",
            "PIPELINE_FETCH_BACKOFF_SECONDS": "0.1",
            **{f"PIPELINE_{k.upper()}": v for k, v in settings.items()},
        }
        self.log_path = log_dir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, wait_ready: bool = True, timeout: float = 90) -> WorkerProcess:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "worker"],
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready_status(self) -> int | None:
        try:
            return http_get(self.base_url + "/readyz", timeout=1)[0]
        except OSError:
            return None

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early; log:\n{self.log()[-4000:]}")
            return self.ready_status() == 200

        wait_until(ready, timeout, what=f"{self.name} /readyz")

    def metrics(self) -> str:
        return http_get(self.base_url + "/metrics")[1].decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (hashing processes)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of the process group
        return self.process.returncode


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A real HTTP server on loopback that records POSTs; :meth:`stop` makes the port refuse."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[ReceivedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/screening"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        ReceivedRequest(self.path, dict(self.headers.items()), body)
                    )
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(r.body) for r in self.requests]


class Alertmanager:
    """Debian's prometheus-alertmanager on loopback, with a config that routes to nowhere."""

    CONFIG = "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alertmanager-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str | None:
        return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

    def start(self) -> Alertmanager:
        binary = self.binary()
        assert binary, "prometheus-alertmanager is not installed (.ci/install-test-deps)"
        config = self.dir / "alertmanager.yml"
        config.write_text(self.CONFIG)
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "alertmanager.log").open("wb"),
        )
        wait_until(lambda: self._status() == 200, 30, what="alertmanager /-/ready")
        return self

    def _status(self) -> int | None:
        try:
            return http_get(self.url + "/-/ready")[0]
        except OSError:
            return None

    def alerts(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(http_get(self.url + "/api/v2/alerts")[1])
        return data

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung sink)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Terminate and start again on the same port: Alertmanager keeps alerts in memory only,
        so it comes back without any (silences and the notification log are on disk)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        self.process.terminate()
        self.process.wait(10)
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def running(*workers: WorkerProcess) -> Iterator[None]:
    """Stop the given workers however the block ends, printing their logs on failure."""
    try:
        yield
    except BaseException:
        for worker in workers:
            sys.stderr.write(f"\n----- log of {worker.name} -----\n{worker.log()[-6000:]}\n")
        raise
    finally:
        for worker in workers:
            worker.stop()


class Prometheus:
    """Debian's prometheus on loopback, scraping given targets every second, with rule files."""

    def __init__(self, targets: list[str], rule_files: list[Path] | None = None) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        self.targets = targets
        self.rule_files = rule_files or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed (.ci/install-test-deps)"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": "upload-screening", "static_configs": [{"targets": self.targets}]}
            ],
        }
        (self.dir / "prometheus.yml").write_text(json.dumps(config))  # JSON is valid YAML
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "prometheus.log").open("wb"),
        )
        wait_until(self._ready, 30, what="prometheus /-/ready")
        return self

    def _ready(self) -> bool:
        try:
            return http_get(self.url + "/-/ready")[0] == 200
        except OSError:
            return False

    def query(self, expr: str) -> dict[str, Any]:
        """The JSON answer of an instant query (status "success" or "error")."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer: dict[str, Any] = json.loads(http_get(url, timeout=10)[1])
        return answer

    def alerts(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(http_get(self.url + "/api/v1/alerts")[1])["data"][
            "alerts"
        ]
        return data

    def log(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)
