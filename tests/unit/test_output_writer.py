"""The output path of the screening agent: what the broker does not take is retried (the batch
waits), what it refuses for good is replaced by a slim copy and a dead letter, and nothing but
cancellation escapes.

The broker is replaced here by a scripted ``send`` that fails the way the client does (real
aiokafka and Faust exception classes, raised synchronously or through the delivery future); the
real-broker path is covered by tests/integration/test_stream_outputs.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
from faust.exceptions import ProducerSendError

from pipeline.core.types import Action
from pipeline.metrics import PipelineMetrics
from pipeline.models import DeadLetter, SourceRef, Stage
from pipeline.outputs import OutputWriter, RetryLog, output_records, refused_for_good
from pipeline.screening import ScreeningOutcome
from pipeline.verdicts import block_record, error_verdict

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SOURCE = SourceRef(topic="uploads", partition=2, offset=40)


def outcome(upload_id: str, metadata: dict[str, Any] | None = None) -> ScreeningOutcome:
    verdict = error_verdict(
        upload_id=upload_id,
        stage=Stage.FETCH,
        reason="timeout",
        message="timed out",
        on_error=Action.BLOCK,
        worker_id="w1",
        decided_at=NOW,
        metadata=metadata,
    )
    return ScreeningOutcome(verdict=verdict, block=block_record(verdict))


class ScriptedBroker:
    """``send`` for OutputWriter. ``failures`` maps an output name to the errors its next sends
    meet, in order (``sync:`` raised by send itself, else through the delivery future)."""

    def __init__(self, failures: dict[str, list[BaseException | str]] | None = None) -> None:
        self.failures = failures or {}
        self.written: list[tuple[str, bytes | None, dict[str, Any]]] = []

    async def send(self, output: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        queue = self.failures.get(output, [])
        failure = queue.pop(0) if queue else None
        if isinstance(failure, str):  # "sync:<exception>" via the next entry
            raise queue.pop(0)  # type: ignore[misc]
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if failure is None:
            self.written.append((output, key, json.loads(value)))
            delivery.set_result("ok")
        else:
            delivery.set_exception(failure)
        return delivery


def faust_wrapped(cause: BaseException) -> ProducerSendError:
    """What Faust raises from ``topic.send`` when the client refuses a record synchronously."""
    error = ProducerSendError(f"Error while sending: {cause!r}")
    error.__cause__ = cause
    return error


def run_writer(
    broker: ScriptedBroker, outcomes: list[ScreeningOutcome]
) -> tuple[PipelineMetrics, list[float]]:
    metrics = PipelineMetrics()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    writer = OutputWriter(
        broker.send, metrics, worker_id="w1", backoff_max_seconds=2.0, sleep=sleep
    )
    records = [r for o in outcomes for r in output_records(o, SOURCE)]
    asyncio.run(writer.write(records))
    return metrics, sleeps


def count(metrics: PipelineMetrics, output: str, handling: str) -> float:
    value = metrics.registry.get_sample_value(
        "screening_output_failures_total", {"output": output, "handling": handling}
    )
    return value or 0.0


def test_transient_failures_are_retried_with_capped_backoff_until_written() -> None:
    broker = ScriptedBroker(
        {
            "verdicts": [
                RequestTimedOutError(),
                KafkaConnectionError(),
                NotLeaderForPartitionError(),
            ]
            + [KafkaTimeoutError()] * 17,
            "blocks": ["sync", faust_wrapped(KafkaTimeoutError())],
        }
    )
    metrics, sleeps = run_writer(broker, [outcome("u1"), outcome("u2")])
    written = [(output, key) for output, key, _ in broker.written]
    # Every record arrives exactly once after its retries; the batch waited meanwhile.
    assert sorted(written) == sorted(
        [("verdicts", b"u1"), ("verdicts", b"u2"), ("blocks", b"u1"), ("blocks", b"u2")]
    )
    assert count(metrics, "verdicts", "retried") == 20
    assert count(metrics, "blocks", "retried") == 1
    assert len(sleeps) == 10  # both verdicts fail in each round
    assert sleeps[3] > sleeps[0]  # exponential...
    assert 1.0 <= sleeps[-1] <= 2.0  # ...up to the cap (with jitter)


def test_a_record_refused_for_good_is_replaced_by_a_slim_copy_and_a_dead_letter() -> None:
    broker = ScriptedBroker({"verdicts": ["sync", faust_wrapped(MessageSizeTooLargeError())]})
    metrics, sleeps = run_writer(broker, [outcome("fat", metadata={"note": "x" * 10_000})])
    by_output = {output: value for output, _, value in broker.written}
    assert by_output["verdicts"]["upload_id"] == "fat"
    assert by_output["verdicts"]["metadata"] == {}  # the slim copy
    assert by_output["verdicts"]["error_action"] == "block"  # same decision
    assert by_output["blocks"]["metadata"] == {"note": "x" * 10_000}  # accepted as it was
    letter = by_output["dead_letters"]
    assert (letter["stage"], letter["reason"], letter["upload_id"]) == (
        "emit",
        "emit_failed",
        "fat",
    )
    assert letter["source"] == SOURCE.model_dump()
    assert count(metrics, "verdicts", "replaced") == 1
    assert sleeps == []  # nothing to wait for


def test_a_refused_replacement_is_dropped_and_the_write_ends() -> None:
    broker = ScriptedBroker({"verdicts": [MessageSizeTooLargeError()] * 2})
    metrics, _ = run_writer(broker, [outcome("u1")])
    assert [o for o, _, _ in broker.written].count("verdicts") == 0
    assert count(metrics, "verdicts", "replaced") == 1
    assert count(metrics, "verdicts", "dropped") == 1
    assert [v["reason"] for o, _, v in broker.written if o == "dead_letters"] == ["emit_failed"]


def test_cancellation_during_backoff_propagates() -> None:
    broker = ScriptedBroker({"verdicts": [RequestTimedOutError()] * 1000})
    writer = OutputWriter(broker.send, PipelineMetrics(), worker_id="w1", backoff_max_seconds=5)

    async def main() -> None:
        task = asyncio.create_task(writer.write(output_records(outcome("u1"), SOURCE)))
        await asyncio.sleep(0.3)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (MessageSizeTooLargeError(), True),
        (ProducerSendError("x"), True),  # no Kafka cause: a deterministic client-side error
        (TypeError("value must be bytes"), True),
        (RequestTimedOutError(), False),
        (KafkaTimeoutError(), False),
        (OSError("connection reset"), False),
        (asyncio.CancelledError(), False),  # a delivery future cancelled by a producer restart
    ],
)
def test_refused_for_good_only_for_record_level_errors(exc: BaseException, permanent: bool) -> None:
    assert refused_for_good(exc) is permanent
    if isinstance(exc, MessageSizeTooLargeError | RequestTimedOutError | KafkaTimeoutError):
        assert refused_for_good(faust_wrapped(exc)) is permanent


class TopicsThatVanishOnce:
    """A storage check whose first confirmation finds the topics re-created (the broker had
    acknowledged records for a topic it no longer had)."""

    def __init__(self) -> None:
        self.epoch = 1
        self.confirmations: list[int] = []

    async def confirm(self, epoch: int) -> None:
        self.confirmations.append(epoch)
        if len(self.confirmations) == 1:
            self.epoch += 1
            raise RuntimeError("topics re-created")


def test_acknowledged_records_are_sent_again_until_their_storage_is_confirmed() -> None:
    broker, storage, metrics = ScriptedBroker(), TopicsThatVanishOnce(), PipelineMetrics()

    async def no_sleep(seconds: float) -> None:
        pass

    writer = OutputWriter(broker.send, metrics, worker_id="w1", sleep=no_sleep, storage=storage)
    asyncio.run(writer.write(output_records(outcome("u1"), SOURCE)))
    written = [(output, key) for output, key, _ in broker.written]
    # Both records went twice: the first time into a topic that was gone.
    assert sorted(written) == sorted([("verdicts", b"u1"), ("blocks", b"u1")] * 2)
    assert storage.confirmations == [1, 2]  # each round confirmed against its own epoch
    assert count(metrics, "verdicts", "retried") == 1
    assert count(metrics, "blocks", "retried") == 1


def test_an_outage_logs_one_line_per_incident_and_a_summary_per_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """32 uploads in flight retrying through a 90 s outage: two lines and a summary, not one
    per write and retry; the next outage is a new incident with its own first line."""
    now = [0.0]
    retry_log = RetryLog(summary_seconds=60, clock=lambda: now[0])
    metrics = PipelineMetrics()
    outage_until = [90.0]

    async def send(output: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if now[0] < outage_until[0]:
            delivery.set_exception(KafkaTimeoutError())
        else:
            delivery.set_result("ok")
        return delivery

    async def sleep(seconds: float) -> None:
        now[0] += 1 / 32  # 32 writes retry side by side: about one round of them a second
        await asyncio.sleep(0)

    writer = OutputWriter(
        send, metrics, worker_id="w1", sleep=sleep, backoff_max_seconds=1, retry_log=retry_log
    )

    async def uploads() -> None:
        batches = [output_records(outcome(f"u{i}"), SOURCE) for i in range(32)]
        await asyncio.gather(*(writer.write(b) for b in batches))

    with caplog.at_level("INFO", logger="pipeline.outputs"):
        asyncio.run(uploads())
        first_outage = [r.getMessage() for r in caplog.records]
        outage_until[0] = now[0] + 10
        asyncio.run(uploads())
    assert count(metrics, "verdicts", "retried") > 32 * 2  # every write retried many times
    assert len(first_outage) == 3, first_outage
    assert "output record(s) not written (KafkaTimeoutError)" in first_outage[0]
    assert first_outage[1].startswith("outputs still not written after 60 s")
    assert first_outage[2].startswith("outputs written again after 90 s"), first_outage
    second = [r.getMessage() for r in caplog.records][3:]
    assert len(second) == 2, second
    assert "output record(s) not written (KafkaTimeoutError)" in second[0]
    assert second[1].startswith("outputs written again after 10 s")


def test_a_dead_letter_of_alert_delivery_is_counted_once_written() -> None:
    broker, metrics = (
        ScriptedBroker({"dead_letters": [RequestTimedOutError()] * 2}),
        PipelineMetrics(),
    )

    def dead_letters_counted() -> float:
        return sum(
            sample.value
            for family in metrics.registry.collect()
            if family.name == "screening_dead_letters"
            for sample in family.samples
            if sample.name == "screening_dead_letters_total"
        )

    counted_while_retried: list[float] = []

    async def sleep(seconds: float) -> None:
        counted_while_retried.append(dead_letters_counted())

    writer = OutputWriter(broker.send, metrics, worker_id="w1", sleep=sleep)
    letter = DeadLetter(
        upload_id="u1",
        stage=Stage.ALERT,
        reason="sink_refused",
        message="the sink said no",
        failed_at=NOW,
        worker_id="w1",
    )
    asyncio.run(writer.write_dead_letter(letter))
    assert [output for output, _, _ in broker.written] == ["dead_letters"]
    # Before: counted before the broker had it, while its write was still being retried.
    assert counted_while_retried == [0, 0]
    assert dead_letters_counted() == 1


def test_an_emit_failed_dead_letter_is_counted_once_written() -> None:
    broker = ScriptedBroker(
        {"verdicts": [MessageSizeTooLargeError()], "dead_letters": [RequestTimedOutError()] * 2}
    )
    metrics = PipelineMetrics()

    def emit_failed_counted() -> float:
        labels = {"stage": "emit", "reason": "emit_failed"}
        return metrics.registry.get_sample_value("screening_dead_letters_total", labels) or 0.0

    counted_while_retried: list[float] = []

    async def sleep(seconds: float) -> None:
        counted_while_retried.append(emit_failed_counted())

    writer = OutputWriter(broker.send, metrics, worker_id="w1", sleep=sleep)
    asyncio.run(writer.write(output_records(outcome("fat"), SOURCE)))
    assert sorted(output for output, _, _ in broker.written) == [
        "blocks",
        "dead_letters",
        "verdicts",
    ]
    # Before: counted when the slim copy was made, while the letter's write was retried.
    assert counted_while_retried == [0, 0]
    assert emit_failed_counted() == 1
