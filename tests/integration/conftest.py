"""Fixtures that start real parts: one tansu broker and one S3-API server per test session,
per-test topics, workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.adapters.broker import EmbeddedBroker
from tests.integration.harness import Alertmanager, KafkaIO, Topics, WebhookReceiver, WorkerProcess
from tests.integration.s3server import S3Server


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (tansu, in memory, loopback) for the whole session."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running_broker:
        yield running_broker


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    """This test's own topics (created) and consumer-group names on the shared broker."""
    created = Topics(broker.bootstrap_servers)
    created.create()
    return created


@pytest.fixture
def kafka(topics: Topics) -> Iterator[KafkaIO]:
    io = KafkaIO(topics)
    yield io
    io.close()


@pytest.fixture
def start_worker(
    topics: Topics, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers with extra PIPELINE_* settings (keyword arguments); stopped after the test,
    their logs printed if it failed."""
    started: list[WorkerProcess] = []

    def start(wait_ready: bool = True, **settings: str) -> WorkerProcess:
        worker = WorkerProcess(topics, tmp_path, **settings)
        started.append(worker)
        return worker.start(wait_ready=wait_ready)

    yield start
    for worker in started:
        worker.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for worker in started:
            print(f"\n----- log of {worker.name} -----\n{worker.log()[-6000:]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # type: ignore[attr-defined]
    return report


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def alertmanager() -> Iterator[Alertmanager]:
    manager = Alertmanager().start()
    yield manager
    manager.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-API server (moto, IAM on, loopback) for the whole session; tests make their own
    buckets."""
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log").start()
    yield server
    server.stop()
