"""End to end with uploads by reference: ``pipeline submit --s3`` puts events on a real broker, a
real worker reads the objects from a real S3-API server (moto's, IAM on) with its PIPELINE_S3_*
settings, and the verdicts say what it found: a listed picture is blocked, a missing object is
an error naming ``s3_no_such_key``, dead-lettered once (never retried) with its reference, and
the same picture in a bucket PIPELINE_S3_BUCKETS does not list is not read at all: an error
naming ``s3_bucket_not_allowed``, not a block that would tell the uploader what it holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from pipeline.core.hashlist import ListConfig
from tests.clirun import isolated_cli, run_cli  # noqa: F401 - isolated_cli is a fixture
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import KafkaIO, Topics, WorkerProcess, wait_until
from tests.integration.lists import entries_for
from tests.integration.s3server import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.usefixtures("isolated_cli")
def test_s3_uploads_are_screened_and_a_missing_object_is_a_clear_error(
    s3_server: S3Server,
    kafka: KafkaIO,
    topics: Topics,
    start_worker: Callable[..., WorkerProcess],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kafka.publish(
        ListConfig.create("known-csam", kind="deny", action="block", version="3"),
        entries_for("known-csam", seed=1),
    )
    bucket = s3_server.bucket()
    s3_server.put(bucket, "2026/12/known.jpg", encode(synthetic_image(1), quality=80))
    elsewhere = s3_server.bucket("elsewhere")  # readable by the worker's user, but not listed
    s3_server.put(elsewhere, "2026/12/known.jpg", encode(synthetic_image(1), quality=80))
    worker = start_worker(**s3_server.worker_settings())

    for name, value in topics.env.items():
        monkeypatch.setenv(name, value)
    known, missing = f"s3://{bucket}/2026/12/known.jpg", f"s3://{bucket}/2026/12/missing.jpg"
    unlisted = f"s3://{elsewhere}/2026/12/known.jpg"
    code, out, err = run_cli(
        capsys, "submit", "--s3", known, "--s3", missing, "--s3", unlisted, "--wait", "60", "--json"
    )
    assert code == 0, err
    by_object = {v["metadata"]["file"]: v for v in map(json.loads, out.splitlines())}
    assert set(by_object) == {known, missing, unlisted}

    blocked = by_object[known]
    assert blocked["action"] == "block"
    assert {m["list"] for m in blocked["matches"]} == {"known-csam"}
    assert blocked["stage_seconds"]["fetch"] > 0
    failed = by_object[missing]
    assert failed["action"] == "error"
    assert (failed["error"]["stage"], failed["error"]["reason"]) == ("fetch", "s3_no_such_key")
    assert missing in failed["error"]["message"]

    refused = by_object[unlisted]
    assert refused["action"] == "error"
    assert refused["matches"] == []
    assert (refused["error"]["stage"], refused["error"]["reason"]) == (
        "fetch", "s3_bucket_not_allowed",
    )  # fmt: skip
    assert not [r for r in s3_server.requests() if r.startswith(f"GET /{elsewhere}/")]

    letters = kafka.wait_for("dead-letters", lambda rs: len(rs) >= 2)
    assert {r["reason"]: r["attempts"] for r in letters} == {
        "s3_no_such_key": 1, "s3_bucket_not_allowed": 1,
    }  # fmt: skip
    [letter] = [r for r in letters if r["reason"] == "s3_no_such_key"]
    assert (letter["upload_id"], letter["reason"], letter["attempts"]) == (
        failed["upload_id"], "s3_no_such_key", 1,
    )  # fmt: skip
    assert letter["original_event"]["content"] == {
        "kind": "s3",
        "bucket": bucket,
        "key": "2026/12/missing.jpg",
        "version_id": None,
    }
    # Counted once the broker has stored the dead letter, which a reader may see a moment sooner.
    dead_letter_counted = 'screening_dead_letters_total{reason="s3_no_such_key",stage="fetch"} 1.0'
    wait_until(lambda: dead_letter_counted in worker.metrics(), 10, what="the dead-letter count")
    assert s3_server.screening.secret_access_key not in worker.log()
