"""``s3`` content against a real S3-API server (moto's, IAM on, loopback) and misbehaving ones.

The fetcher reads objects and their versions with the screening user's credentials, from the
buckets it is allowed only (another bucket is refused without a request); what the storage
refuses (missing key, bucket or version, a denied bucket, unknown credentials) is a
permanent refusal with its own reason; an object over the byte cap is refused before its body is
read, and a body with no end is cut at the cap; a server that is gone, silent or trickling is a
retryable failure within the attempt's time, which the screener retries before it dead-letters
the reference, and so is a credential provider that never answers, within the client's time.
The secret never shows in logs, reprs or records.
"""

from __future__ import annotations

import asyncio
import logging
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic import SecretStr

from pipeline.adapters.broker import free_port
from pipeline.adapters.fetch import Fetcher
from pipeline.config import Settings
from pipeline.core.matching import Matcher
from pipeline.fetch_policy import FetchFailed, FetchLimits, FetchRefused, S3Access
from pipeline.hashpool import HashPool
from pipeline.metrics import PipelineMetrics
from pipeline.models import S3Content, SourceRef, UploadEvent
from pipeline.screening import Screener, ScreeningOutcome
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import wait_until
from tests.integration.s3server import ALLOWED_BUCKETS, Credentials, S3Server
from tests.trickle import endless_server, silent_server, trickling_server

pytestmark = pytest.mark.integration

T = TypeVar("T")
LIMITS = FetchLimits(max_bytes=1_000_000, connect_timeout=1.0, read_timeout=2.0)


def with_fetcher(
    access: S3Access, use: Callable[[Fetcher], Awaitable[T]], limits: FetchLimits = LIMITS
) -> T:
    """Run ``use`` with a fetcher for ``access`` in a fresh event loop; the fetcher is closed."""

    async def main() -> T:
        fetcher = Fetcher(limits, access)
        try:
            return await use(fetcher)
        finally:
            await fetcher.close()

    return asyncio.run(main())


def test_objects_and_their_versions_are_read_with_the_screening_users_credentials(
    s3_server: S3Server,
) -> None:
    picture = encode(synthetic_image(3))
    bucket = s3_server.bucket()
    s3_server.put(bucket, "2026/12/photo.jpg", picture)
    versioned = s3_server.bucket("history", versioned=True)
    first = s3_server.put(versioned, "avatar.jpg", b"first version")
    second = s3_server.put(versioned, "avatar.jpg", b"second version")
    assert first is not None
    assert second not in (None, first)

    async def read_all(fetcher: Fetcher) -> list[bytes]:
        return [
            await fetcher.fetch(S3Content(bucket=bucket, key="2026/12/photo.jpg")),
            await fetcher.fetch(S3Content(bucket=versioned, key="avatar.jpg")),
            await fetcher.fetch(S3Content(bucket=versioned, key="avatar.jpg", version_id=first)),
        ]

    assert with_fetcher(s3_server.access(), read_all) == [
        picture,
        b"second version",
        b"first version",
    ]


def test_a_bucket_not_allowed_is_refused_without_a_request_to_the_storage(
    s3_server: S3Server,
) -> None:
    """The bucket exists, holds the picture and the screening user may read it: only the
    allow-list stands in the way. The fetch is refused as s3_bucket_not_allowed and the server
    never sees a request for it; allowed, the same fetcher settings read it (the refusal is the
    list's, and the request log shows a read when there is one)."""
    picture = encode(synthetic_image(4))
    elsewhere = s3_server.bucket("elsewhere")
    s3_server.put(elsewhere, "photo.jpg", picture)
    allowed = s3_server.bucket()
    s3_server.put(allowed, "photo.jpg", picture)
    content = S3Content(bucket=elsewhere, key="photo.jpg")

    async def refused_then_read_another(fetcher: Fetcher) -> FetchRefused:
        with pytest.raises(FetchRefused) as caught:
            await fetcher.fetch(content)
        # A read of an allowed bucket after it: once the log shows it, it shows all before it.
        assert await fetcher.fetch(S3Content(bucket=allowed, key="photo.jpg")) == picture
        return caught.value

    refusal = with_fetcher(s3_server.access(), refused_then_read_another)
    assert refusal.reason == "s3_bucket_not_allowed"
    assert content.uri in str(refusal)
    read_allowed = f"GET /{allowed}/photo.jpg"
    wait_until(lambda: read_allowed in s3_server.requests(), 10, what="the allowed read logged")
    requests = s3_server.requests()
    assert [r for r in requests if r.split()[1].startswith(f"/{elsewhere}")] == [
        f"PUT /{elsewhere}",
        f"PUT /{elsewhere}/photo.jpg",
    ]  # the test's own setup, nothing of the worker's

    async def read(fetcher: Fetcher) -> bytes:
        return await fetcher.fetch(content)

    listed = s3_server.access(buckets=(*ALLOWED_BUCKETS, "elsewhere-*"))
    assert with_fetcher(listed, read) == picture
    wait_until(lambda: f"GET /{elsewhere}/photo.jpg" in s3_server.requests(), 10, what="the read")


def test_what_the_storage_refuses_is_permanent_with_a_clear_reason(s3_server: S3Server) -> None:
    bucket = s3_server.bucket()
    s3_server.put(bucket, "there.jpg", b"\xff\xd8 a picture")
    versioned = s3_server.bucket("history", versioned=True)
    s3_server.put(versioned, "avatar.jpg", b"only version")
    private = s3_server.bucket("private")  # the screening user is denied private-* buckets
    s3_server.put(private, "there.jpg", b"\xff\xd8 a picture")
    cases = {
        "s3_no_such_key": S3Content(bucket=bucket, key="missing.jpg"),
        "s3_no_such_bucket": S3Content(bucket="never-made-bucket", key="there.jpg"),
        "s3_no_such_version": S3Content(bucket=versioned, key="avatar.jpg", version_id="v-0"),
        "s3_access_denied": S3Content(bucket=private, key="there.jpg"),
    }

    async def refusals(fetcher: Fetcher) -> dict[str, str]:
        seen = {}
        for expected, content in cases.items():
            with pytest.raises(FetchRefused) as caught:
                await fetcher.fetch(content)
            assert content.uri in str(caught.value)
            seen[expected] = caught.value.reason
        return seen

    assert with_fetcher(s3_server.access(), refusals) == {reason: reason for reason in cases}

    async def refused_reason(fetcher: Fetcher) -> str:
        with pytest.raises(FetchRefused) as caught:
            await fetcher.fetch(S3Content(bucket=bucket, key="there.jpg"))
        return caught.value.reason

    unknown_key = Credentials("AKIAUNKNOWNKEY000000", "not-a-secret")
    wrong_secret = Credentials(s3_server.screening.access_key_id, "not-the-secret")
    for credentials in (unknown_key, wrong_secret):
        access = s3_server.access(credentials)
        assert with_fetcher(access, refused_reason) == "s3_bad_credentials"


def test_an_object_over_the_cap_is_refused_before_its_body_is_read(s3_server: S3Server) -> None:
    bucket = s3_server.bucket()
    s3_server.put(bucket, "small.jpg", b"small")
    s3_server.put(bucket, "huge.jpg", b"\0" * (3 * LIMITS.max_bytes))

    async def refuse_huge(fetcher: Fetcher) -> tuple[str, int, float]:
        await fetcher.fetch(S3Content(bucket=bucket, key="small.jpg"))  # client made, warm
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(FetchRefused) as caught:
                await fetcher.fetch(S3Content(bucket=bucket, key="huge.jpg"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return caught.value.reason, peak, time.monotonic() - started

    reason, peak, seconds = with_fetcher(s3_server.access(), refuse_huge)
    assert reason == "too_large_bytes"
    # Refused from Content-Length: the 3 MB body is never read. What the fetch allocated is the
    # event loop's socket read-ahead (up to 256 KiB) and the headers (measured: 0.29 MB).
    assert peak < LIMITS.max_bytes // 2, peak
    assert seconds < 2


def test_a_body_with_no_end_and_no_length_is_cut_at_the_cap() -> None:
    """A server that sends more than any Content-Length (here: none, and no end) is stopped
    after cap + 1 bytes: the streaming check, not the declared size, ends it."""
    with endless_server() as (url, sent):
        access = S3Access(
            endpoint_url=url,
            region="us-east-1",
            access_key_id="any",
            secret_access_key=SecretStr("any"),
            addressing_style="path",
            buckets=("endless",),
        )

        async def refuse(fetcher: Fetcher) -> tuple[str, int]:
            await fetcher._s3._s3()  # the client (~13 MB of parsed S3 model) made beforehand
            tracemalloc.start()
            try:
                with pytest.raises(FetchRefused) as caught:
                    await fetcher.fetch(S3Content(bucket="endless", key="stream.jpg"))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            return caught.value.reason, peak

        reason, peak = with_fetcher(access, refuse)
    assert reason == "too_large_bytes"
    assert sent.bytes > LIMITS.max_bytes  # the server did send more than the cap
    # What the fetcher held: the cap's worth of chunks plus the client's read buffer.
    assert peak < 2 * LIMITS.max_bytes, peak


def without_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing in the default credential chain: no variables, no shared files, no metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    # The chain's last step asks the instance metadata service, a link-local address: not here.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_no_credentials_in_the_settings_nor_the_default_chain_is_a_clear_refusal(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Unset PIPELINE_S3_* credentials leave the default AWS chain in charge; with nothing in
    it the read is refused as s3_no_credentials (not an internal error, not retried)."""
    without_aws_credentials(monkeypatch, tmp_path)
    bucket = s3_server.bucket()
    s3_server.put(bucket, "a.jpg", b"\xff\xd8 a picture")
    access = S3Access(
        endpoint_url=s3_server.url, region="us-east-1", addressing_style="path", buckets=(bucket,)
    )

    async def refused_reason(fetcher: Fetcher) -> str:
        with pytest.raises(FetchRefused) as caught:
            await fetcher.fetch(S3Content(bucket=bucket, key="a.jpg"))
        return caught.value.reason

    assert with_fetcher(access, refused_reason) == "s3_no_credentials"


def fake_storage(url: str) -> S3Access:
    return S3Access(
        endpoint_url=url,
        region="us-east-1",
        access_key_id="any",
        secret_access_key=SecretStr("any"),
        addressing_style="path",
        buckets=("any-bucket",),
    )


def failure_within(url: str, limits: FetchLimits) -> tuple[FetchFailed, float]:
    async def fail(fetcher: Fetcher) -> FetchFailed:
        with pytest.raises(FetchFailed) as caught:
            await fetcher.fetch(S3Content(bucket="any-bucket", key="a.jpg"))
        return caught.value

    started = time.monotonic()
    failure = with_fetcher(fake_storage(url), fail, limits)
    return failure, time.monotonic() - started


def test_a_storage_that_is_gone_is_a_retryable_connection_failure() -> None:
    failure, seconds = failure_within(f"http://127.0.0.1:{free_port()}", LIMITS)
    assert failure.reason == "connection_failed"
    assert seconds < 5  # client creation included


@pytest.mark.timeout(30)
def test_a_silent_or_trickling_storage_is_a_retryable_timeout_within_the_attempts_time() -> None:
    """A silent server trips the read timeout; one trickling its body resets the read timeout
    with every byte and is ended by the attempt's total (connect + 3 x read)."""
    limits = FetchLimits(max_bytes=2_000_000, connect_timeout=0.5, read_timeout=0.5)
    with silent_server() as url:
        failure, seconds = failure_within(url, limits)
    assert failure.reason == "timeout"
    assert seconds < 5
    with trickling_server(0.05) as url:
        root = url.rsplit("/", 1)[0]
        failure, seconds = failure_within(root, limits)
    assert failure.reason == "timeout"
    assert 2.0 <= seconds < 6


@pytest.mark.timeout(60)
def test_a_credential_provider_that_never_answers_is_a_retryable_failure_in_the_clients_time(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No static keys, and the chain's container provider points at a server that takes the
    request and never answers (a hung credential agent). Each attempt, and each of two uploads
    arriving together, fails as s3_client_timeout (retryable) within the client's time, and the
    provider was asked each time. botocore's own wait for it (2 s x 3 attempts, 1 s between)
    would otherwise hold the upload ~9 s and then refuse it for good."""
    without_aws_credentials(monkeypatch, tmp_path)
    bucket = s3_server.bucket()
    s3_server.put(bucket, "a.jpg", b"\xff\xd8 a picture")
    access = S3Access(
        endpoint_url=s3_server.url,
        region="us-east-1",
        addressing_style="path",
        buckets=(bucket,),
        client_timeout=1.0,
    )
    asked: list[bytes] = []

    async def attempts(fetcher: Fetcher) -> list[tuple[str, float]]:
        await fetcher._s3._session()  # loaded beforehand: the time measured is the provider's
        results = []
        for together in (1, 2):  # one upload, then two at once (one makes, one waits)
            started = time.monotonic()
            failures = await asyncio.gather(
                *(fetcher.fetch(S3Content(bucket=bucket, key="a.jpg")) for _ in range(together)),
                return_exceptions=True,
            )
            seconds = time.monotonic() - started
            for failure in failures:
                assert isinstance(failure, FetchFailed), failure
                results.append((failure.reason, seconds))
        return results

    with silent_server(asked) as url:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{url}/credentials")
        results = with_fetcher(access, attempts)
    assert [reason for reason, _ in results] == ["s3_client_timeout"] * 3
    for _, seconds in results:
        assert 1.0 <= seconds < 3.0, results
    assert len(asked) >= 2, asked  # the provider was asked again: nothing stuck in between
    assert all(request.startswith(b"GET /credentials ") for request in asked), asked


def test_the_secret_is_never_logged_or_shown(
    s3_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    secret = s3_server.screening.secret_access_key
    bucket = s3_server.bucket()
    s3_server.put(bucket, "a.jpg", b"\xff\xd8 a picture")
    access = s3_server.access()

    async def read_and_fail(fetcher: Fetcher) -> str:
        await fetcher.fetch(S3Content(bucket=bucket, key="a.jpg"))
        with pytest.raises(FetchRefused) as caught:
            await fetcher.fetch(S3Content(bucket=bucket, key="missing.jpg"))
        return f"{caught.value!s} {caught.value!r} {fetcher._s3!r}"

    with caplog.at_level(logging.DEBUG):
        shown = with_fetcher(access, read_and_fail)
    settings = Settings(
        s3_endpoint_url=s3_server.url,
        s3_access_key_id=access.access_key_id,
        s3_secret_access_key=secret,
    )
    assert caplog.records  # botocore logs at DEBUG: requests, signing, responses
    for text in (caplog.text, shown, repr(access), str(access), repr(settings), str(settings)):
        assert secret not in text
    assert settings.s3_access().secret_access_key == SecretStr(secret)


def test_the_screener_retries_a_storage_that_is_gone_then_dead_letters_the_reference() -> None:
    """Retryable s3 failures go through the screener's retry loop like a URL's: every attempt
    made, the reason and the object's reference (no credentials) in the dead letter."""
    settings = Settings(
        bootstrap_servers="unused:9092",
        worker_id="w1",
        fetch_attempts=3,
        fetch_backoff_seconds=0.01,
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        s3_region="us-east-1",
        s3_access_key_id="screening",
        s3_secret_access_key="s3cr3t-value",
        s3_addressing_style="path",
        s3_buckets="uploads",
    )
    screener = Screener(
        settings,
        matcher=Matcher(),
        fetcher=Fetcher(settings.fetch_limits(), settings.s3_access()),
        pool=HashPool(0),
        metrics=PipelineMetrics(),
        limits=settings.guard_limits(),
    )
    event = UploadEvent(upload_id="u1", content=S3Content(bucket="uploads", key="a.jpg"))

    async def screen() -> ScreeningOutcome:
        try:
            return await screener.screen(
                event.model_dump_json().encode(), b"u1", SourceRef(topic="t", partition=0, offset=1)
            )
        finally:
            await screener.close()

    outcome = asyncio.run(screen())
    letter = outcome.dead_letter
    assert letter is not None
    assert (letter.stage, letter.reason, letter.attempts) == ("fetch", "connection_failed", 3)
    assert letter.original_event is not None
    assert letter.original_event["content"] == {
        "kind": "s3", "bucket": "uploads", "key": "a.jpg", "version_id": None,
    }  # fmt: skip
    assert outcome.verdict.action == "error"
    assert "s3cr3t-value" not in letter.model_dump_json() + outcome.verdict.model_dump_json()
