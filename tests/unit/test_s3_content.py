"""``s3`` content without a server: the wire form's rules (mirrored by the committed schema),
how the S3 client's errors become fetch reasons, the PIPELINE_S3_* settings, and
``pipeline submit --s3``'s URI."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    FlexibleChecksumError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from pydantic import SecretStr, ValidationError

from pipeline.adapters.s3 import S3Reader, classify_failure
from pipeline.application.uploads import s3_content, s3_event
from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.fetch_policy import (
    FetchFailed,
    FetchLimits,
    FetchRefused,
    S3Access,
    bucket_allowed,
)
from pipeline.models import S3Content, UploadEvent
from pipeline.worker import log_s3_buckets
from tests.clirun import isolated_cli, run_cli  # noqa: F401 - isolated_cli is a fixture

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "upload-event.json").read_text()
)


def schema_accepts(content: dict[str, object]) -> bool:
    event = {"schema_version": 1, "upload_id": "u1", "content": content}
    return jsonschema.Draft202012Validator(SCHEMA).is_valid(event)


def model_accepts(content: dict[str, object]) -> bool:
    try:
        UploadEvent.model_validate({"upload_id": "u1", "content": content})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("bucket", "valid"),
    [
        ("abc", True),
        ("my-uploads.2026", True),
        ("a" * 63, True),
        ("ab", False),  # 3 to 63 characters
        ("a" * 64, False),
        ("Uploads", False),  # lowercase only
        ("my_uploads", False),
        ("-uploads", False),  # starts and ends with a letter or digit
        ("uploads.", False),
        ("my..uploads", False),  # no two dots in a row
        ("192.168.1.10", False),  # not an IP address
        ("arn:aws:s3:us-east-1:123456789012:accesspoint/other", False),  # another endpoint
        ("uploads/../other", False),
    ],
)
def test_bucket_names_follow_s3s_rules_in_the_model_and_the_schema(
    bucket: str, valid: bool
) -> None:
    content = {"kind": "s3", "bucket": bucket, "key": "a.jpg"}
    assert model_accepts(content) is valid
    assert schema_accepts(content) is valid


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("a.jpg", True),
        ("2026/12/ünïcode photo (1).jpg", True),
        ("k" * 1024, True),
        ("é" * 512, True),  # 1024 bytes of UTF-8
        ("", False),
        ("k" * 1025, False),
        ("é" * 513, False),  # 513 characters, 1026 bytes: S3 caps keys in bytes
        ("a..b/c.d.jpg", True),  # dots inside a name are fine
        ("a\nentry quarantined: list=x", False),  # a newline would forge a log line
        ("a\x1b[31m.jpg", False),  # so would a terminal escape
        ("uploads/../private/x.jpg", False),  # a proxy may normalise it into another object
        ("uploads/./x.jpg", False),
        ("..", False),
    ],
)
def test_keys_are_1_to_1024_bytes_of_utf8(key: str, valid: bool) -> None:
    assert model_accepts({"kind": "s3", "bucket": "uploads", "key": key}) is valid


def test_a_key_with_a_lone_surrogate_is_invalid() -> None:
    raw = b'{"upload_id": "u1", "content": {"kind": "s3", "bucket": "uploads", "key": "a\\ud800"}}'
    with pytest.raises(ValidationError):
        UploadEvent.model_validate_json(raw)


@pytest.mark.parametrize(
    ("version_id", "valid"),
    [
        ("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", True),
        ("null", True),
        ("v" * 1024, True),
        ("", False),
        ("v" * 1025, False),
        ("has space", False),
        ("ünïcode", False),
    ],
)
def test_version_ids_are_printable_ascii(version_id: str, valid: bool) -> None:
    content = {"kind": "s3", "bucket": "uploads", "key": "a.jpg", "version_id": version_id}
    assert model_accepts(content) is valid
    assert schema_accepts(content) is valid


@pytest.mark.parametrize(
    "content",
    [
        {"kind": "s3", "bucket": "uploads-a\n", "key": "a.jpg"},
        {"kind": "s3", "bucket": "uploads", "key": "a.jpg\n"},
        {"kind": "s3", "bucket": "uploads", "key": "a.jpg", "version_id": "v1\n"},
    ],
)
def test_a_final_newline_is_refused_although_dollar_would_match_before_it(
    content: dict[str, str],
) -> None:
    """Python's ``$`` also matches before a final newline: a bucket like "uploads-a\\n" passed
    the pattern, the allow-list ``uploads-*`` and reached the log lines."""
    assert model_accepts(content) is False


def test_an_s3_event_round_trips_and_names_its_object() -> None:
    content = S3Content(bucket="uploads", key="a b/c.jpg", version_id="v1")
    assert content.uri == "s3://uploads/a b/c.jpg?versionId=v1"
    event = UploadEvent(upload_id="u1", content=content)
    assert UploadEvent.model_validate_json(event.model_dump_json()) == event
    assert S3Content(bucket="uploads", key="c.jpg").uri == "s3://uploads/c.jpg"


def client_error(code: str, status: int) -> ClientError:
    """The exception botocore raises for an error answer of the storage."""
    response: Any = {
        "Error": {"Code": code, "Message": "..."},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("error", "retried", "reason"),
    [
        (client_error("NoSuchKey", 404), False, "s3_no_such_key"),
        (client_error("NoSuchBucket", 404), False, "s3_no_such_bucket"),
        (client_error("NoSuchVersion", 404), False, "s3_no_such_version"),
        (client_error("404", 404), False, "s3_no_such_key"),
        (client_error("AccessDenied", 403), False, "s3_access_denied"),
        (client_error("InvalidObjectState", 403), False, "s3_invalid_object_state"),
        (client_error("InvalidAccessKeyId", 403), False, "s3_bad_credentials"),
        (client_error("SignatureDoesNotMatch", 403), False, "s3_bad_credentials"),
        (client_error("ExpiredToken", 400), False, "s3_bad_credentials"),
        (client_error("InvalidArgument", 400), False, "s3_refused"),
        (client_error("SlowDown", 503), True, "s3_throttled"),
        (client_error("Throttling", 400), True, "s3_throttled"),
        (client_error("", 429), True, "s3_throttled"),
        (client_error("ServiceUnavailable", 503), True, "s3_throttled"),
        (client_error("InternalError", 500), True, "http_5xx"),
        (client_error("", 502), True, "http_5xx"),
        (client_error("RequestTimeout", 400), True, "timeout"),
        (ReadTimeoutError(endpoint_url="http://s3"), True, "timeout"),
        (ConnectTimeoutError(endpoint_url="http://s3"), True, "timeout"),
        (TimeoutError(), True, "timeout"),
        (EndpointConnectionError(endpoint_url="http://s3"), True, "connection_failed"),
        (ResponseStreamingError(error="reset"), True, "connection_failed"),
        (IncompleteReadError(actual_bytes=1, expected_bytes=2), True, "connection_failed"),
        (FlexibleChecksumError(error_msg="crc32 mismatch"), True, "connection_failed"),
        (NoCredentialsError(), False, "s3_no_credentials"),
        (
            CredentialRetrievalError(provider="container-role", error_msg="timed out"),
            True,
            "s3_credentials_unavailable",
        ),
        (ParamValidationError(report="bad"), False, "s3_refused"),
        (aiohttp.ServerDisconnectedError(), True, "connection_failed"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_the_storages_answers_become_retryable_or_permanent_reasons(
    error: Exception, retried: bool, reason: str
) -> None:
    failure = classify_failure(error, "s3://uploads/a.jpg")
    assert isinstance(failure, FetchFailed if retried else FetchRefused)
    assert failure.reason == reason
    assert "s3://uploads/a.jpg" in str(failure)


def test_an_error_that_is_not_the_clients_is_left_to_the_screener() -> None:
    """A bug (here a KeyError) is not dressed up as a refusal: the screener reports it as an
    internal error with its traceback."""
    assert classify_failure(KeyError("Body"), "s3://uploads/a.jpg") is None


def test_s3_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("PIPELINE_S3_REGION", "eu-west-1")
    monkeypatch.setenv("PIPELINE_S3_ACCESS_KEY_ID", "screening")
    monkeypatch.setenv("PIPELINE_S3_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("PIPELINE_S3_ADDRESSING_STYLE", "path")
    settings = load_settings()
    access = settings.s3_access()
    assert (access.endpoint_url, access.region, access.access_key_id) == (
        "http://minio:9000", "eu-west-1", "screening",
    )  # fmt: skip
    assert access.secret_access_key == SecretStr("s3cr3t-value")
    assert access.addressing_style == "path"
    for shown in (repr(settings), str(settings), repr(access), str(access)):
        assert "s3cr3t-value" not in shown


def test_unset_s3_settings_leave_the_aws_defaults() -> None:
    access = load_settings().s3_access()
    assert (access.endpoint_url, access.region, access.access_key_id) == (None, None, None)
    assert access.secret_access_key is None
    assert access.addressing_style == "auto"
    assert access.buckets == ()  # no bucket allowed: s3 uploads are refused until named
    assert access.client_timeout == 5.0


@pytest.mark.parametrize(
    ("bucket", "allowed", "expected"),
    [
        ("uploads", (), False),  # the default allows nothing
        ("uploads", ("uploads",), True),
        ("uploads", ("avatars", "uploads"), True),
        ("uploads-eu", ("uploads",), False),  # a name is exact, not a prefix
        ("upload", ("uploads",), False),
        ("uploads", ("uploads-eu",), False),
        ("uploads-eu", ("uploads-*",), True),
        ("uploads-", ("uploads-*",), True),
        ("uploads", ("uploads-*",), False),
        ("private-uploads-eu", ("uploads-*",), False),  # a prefix, not a substring
        ("private", ("*",), True),  # `*` alone: every bucket, the operator's explicit choice
        ("uploads.eu", ("uploads*",), True),
    ],
)
def test_a_bucket_is_allowed_by_its_name_or_a_prefix_pattern(
    bucket: str, allowed: tuple[str, ...], expected: bool
) -> None:
    assert bucket_allowed(bucket, allowed) is expected


def test_allowed_buckets_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_S3_BUCKETS", " uploads-eu , avatars,uploads-*,")
    monkeypatch.setenv("PIPELINE_S3_CLIENT_TIMEOUT_SECONDS", "2.5")
    access = load_settings().s3_access()
    assert access.buckets == ("avatars", "uploads-*", "uploads-eu")
    assert access.client_timeout == 2.5


@pytest.mark.parametrize(
    "buckets",
    [
        "Uploads",  # bucket names are lowercase: this one could never match
        "up",  # too short for a name
        "up*loads",  # `*` only at the end
        "*-uploads",
        "uploads**",
        "-uploads*",  # no bucket starts with a hyphen
        "arn:aws:s3:us-east-1:123456789012:accesspoint/uploads",
        "uploads,bad_bucket",
    ],
)
def test_a_bucket_pattern_that_can_match_no_bucket_fails_at_start(buckets: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(s3_buckets=buckets)
    assert "PIPELINE_S3_BUCKETS" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "level", "says"),
    [
        ({}, logging.INFO, "PIPELINE_S3_BUCKETS is empty"),
        ({"s3_endpoint_url": "http://minio:9000"}, logging.WARNING, "PIPELINE_S3_BUCKETS is empty"),
        ({"s3_buckets": "uploads-*,avatars"}, logging.INFO, "buckets avatars, uploads-*"),
    ],
)
def test_the_worker_says_at_start_which_buckets_s3_uploads_may_name(
    overrides: dict[str, str], level: int, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline.worker"):
        log_s3_buckets(load_settings(**overrides))
    [record] = caplog.records
    assert (record.levelno, says in record.getMessage()) == (level, True)


def test_a_bucket_not_allowed_is_refused_before_the_client_is_made() -> None:
    """The refusal needs neither the client nor the storage: nothing is loaded, no credential
    is looked for, no request is made (the integration tests watch the server's log too)."""
    reader = S3Reader(
        FetchLimits(max_bytes=1000),
        S3Access(endpoint_url="http://127.0.0.1:9", buckets=("uploads", "uploads-*")),
    )

    async def refused() -> tuple[FetchRefused, bool]:
        try:
            with pytest.raises(FetchRefused) as caught:
                await reader.get(S3Content(bucket="private-uploads", key="a.jpg"))
            return caught.value, reader._preparing is None and reader._client is None
        finally:
            await reader.close()

    failure, nothing_made = asyncio.run(refused())
    assert failure.reason == "s3_bucket_not_allowed"
    assert "s3://private-uploads/a.jpg" in str(failure)
    assert "PIPELINE_S3_BUCKETS" in str(failure)
    assert nothing_made  # no client, not even the session's import started


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"s3_access_key_id": "screening"}, "or neither"),
        ({"s3_secret_access_key": "s3cr3t-value"}, "or neither"),
        ({"s3_endpoint_url": "minio:9000"}, "PIPELINE_S3_ENDPOINT_URL"),
        ({"s3_endpoint_url": "http://minio:9000/bucket?x=1"}, "PIPELINE_S3_ENDPOINT_URL"),
        ({"s3_endpoint_url": "http://user:pw@minio:9000"}, "PIPELINE_S3_ENDPOINT_URL"),
        ({"s3_addressing_style": "dns"}, "PIPELINE_S3_ADDRESSING_STYLE"),
        ({"s3_region": "eu west"}, "PIPELINE_S3_REGION"),
        ({"s3_region": "eu_west_1"}, "PIPELINE_S3_REGION"),  # botocore refuses underscores
    ],
)
def test_bad_s3_settings_fail_at_start_with_a_readable_error(
    overrides: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    assert problem in str(caught.value)
    assert "s3cr3t-value" not in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "bucket", "key", "version"),
    [
        ("s3://uploads/a.jpg", "uploads", "a.jpg", None),
        ("s3://uploads/2026/12/a b.jpg", "uploads", "2026/12/a b.jpg", None),
        ("s3://uploads/a.jpg?versionId=3HL4kqtJ", "uploads", "a.jpg", "3HL4kqtJ"),
        ("s3://uploads/what?.jpg", "uploads", "what?.jpg", None),  # a ? alone is the key's
        ("s3://uploads/a%20b.jpg", "uploads", "a%20b.jpg", None),  # as written, like aws s3
    ],
)
def test_s3_uris_name_a_bucket_a_key_and_maybe_a_version(
    uri: str, bucket: str, key: str, version: str | None
) -> None:
    content = s3_content(uri)
    assert (content.bucket, content.key, content.version_id) == (bucket, key, version)
    event = s3_event(content)
    assert event.content == content
    assert event.metadata == {"file": content.uri}
    assert event.upload_id.startswith(Path(key).stem[:64])


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("https://uploads.s3.amazonaws.com/a.jpg", "not an s3:// URI"),
        ("s3://uploads", "names no key"),
        ("s3://uploads/", "names no key"),
        ("s3://Uploads/a.jpg", "bucket"),
        ("s3://uploads/a.jpg?versionId=", "version_id"),
    ],
)
def test_bad_s3_uris_say_what_is_wrong(uri: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        s3_content(uri)


@pytest.mark.usefixtures("isolated_cli")
def test_submit_refuses_bad_or_missing_references_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(capsys, "submit", "--s3", "s3://uploads")
    assert code == 2
    assert "names no key" in err
    code, _, err = run_cli(capsys, "submit")
    assert code == 2
    assert "--s3" in err
