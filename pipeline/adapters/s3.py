"""Reading ``s3`` upload content from S3-API object storage, under the fetch rules.

Owns the S3 client of a worker (one, created on the first ``s3`` upload and closed with the
fetcher) and the translation of what the storage answers into the fetch vocabulary of
:mod:`pipeline.fetch_policy`. The rules are :mod:`pipeline.adapters.fetch`'s, and two of its own:
- only buckets the operator allows are read (:func:`~pipeline.fetch_policy.bucket_allowed`,
  PIPELINE_S3_BUCKETS, none by default): the event producer names the object, so without it any
  producer could make the worker read, and learn from the verdict about, any object its
  credentials reach. A bucket not allowed is refused before the client is made or any request
  is sent;
- making the client (its import, the S3 model, credentials from the default chain, which may
  ask a container endpoint, instance metadata or STS) has its own time limit, so a credential
  provider that never answers is a retryable failure, not a consumer stuck on its first upload;
- the byte cap is checked from the object's Content-Length before its body is read, and again
  while streaming: never more than the cap + 1 bytes are read, whatever the server sends;
- connect and read timeouts, plus a total for one attempt (connect + 3 x read), so a server
  that trickles bytes cannot hold an attempt for ever;
- one attempt per call: the client's own retries are off, so every retry is the screener's,
  with its backoff and deadline, exactly as for ``url`` content;
- clear reasons: a missing key, bucket or version, a refused access, an archived object and
  refused credentials are permanent (:class:`FetchRefused`); throttling, 5xx, timeouts,
  broken connections and credential providers that fail or do not answer in time are retryable
  (:class:`FetchFailed`).

The endpoint and credentials are the operator's settings (:class:`~pipeline.fetch_policy.
S3Access`), never logged: messages name the object (``s3://bucket/key``) and the storage's
error code only. Content is never written anywhere: the bytes are returned to the caller.
aiobotocore is imported on the first ``s3`` upload, in a thread: loading it and the S3 service
model (0.35 s of CPU, +26 MB RSS with the client) is a cost a worker without ``s3`` uploads
never pays, and it must not stall the event loop (heartbeats) of one that has them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import aiohttp

from pipeline.errors import PipelineError
from pipeline.fetch_policy import (
    FetchFailed,
    FetchLimits,
    FetchReason,
    FetchRefused,
    S3Access,
    bucket_allowed,
)
from pipeline.models import S3Content

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import GetObjectOutputTypeDef

#: Bytes asked of the body stream at a time.
READ_CHUNK_BYTES = 64 * 1024
#: Connections the client keeps to the storage (as many as the URL fetcher's pool).
MAX_POOL_CONNECTIONS = 64

#: S3 error codes whose request will never succeed as it is, and the reason each is reported as.
REFUSED_CODES: dict[str, FetchReason] = {
    "NoSuchKey": FetchReason.S3_NO_SUCH_KEY,
    "NotFound": FetchReason.S3_NO_SUCH_KEY,  # a 404 without a body (HEAD-like answers)
    "404": FetchReason.S3_NO_SUCH_KEY,
    "NoSuchBucket": FetchReason.S3_NO_SUCH_BUCKET,
    "NoSuchVersion": FetchReason.S3_NO_SUCH_VERSION,
    "AccessDenied": FetchReason.S3_ACCESS_DENIED,
    "AllAccessDisabled": FetchReason.S3_ACCESS_DENIED,
    "InvalidObjectState": FetchReason.S3_INVALID_OBJECT_STATE,
    "InvalidAccessKeyId": FetchReason.S3_BAD_CREDENTIALS,
    "SignatureDoesNotMatch": FetchReason.S3_BAD_CREDENTIALS,
    "InvalidToken": FetchReason.S3_BAD_CREDENTIALS,
    "ExpiredToken": FetchReason.S3_BAD_CREDENTIALS,
    "InvalidSecurity": FetchReason.S3_BAD_CREDENTIALS,
}
#: S3 error codes that ask the client to come back later, whatever their HTTP status.
RETRIED_CODES: dict[str, FetchReason] = {
    "SlowDown": FetchReason.S3_THROTTLED,
    "Throttling": FetchReason.S3_THROTTLED,
    "ThrottlingException": FetchReason.S3_THROTTLED,
    "RequestLimitExceeded": FetchReason.S3_THROTTLED,
    "TooManyRequestsException": FetchReason.S3_THROTTLED,
    "ServiceUnavailable": FetchReason.S3_THROTTLED,
    "RequestTimeout": FetchReason.TIMEOUT,  # 400: S3 gave up waiting for the request
    "InternalError": FetchReason.HTTP_5XX,
}


def classify_failure(exc: Exception, uri: str) -> PipelineError | None:
    """The fetch error an exception of the S3 client stands for (retryable or permanent), or
    None for one that is not the client's (a bug: the caller lets it through, and the screener
    reports it as an internal error with its traceback).

    ``uri`` names the object in the message. Knows botocore's exception classes, so call it
    only once aiobotocore is loaded. A botocore error not recognised below is a refusal naming
    its type: the request as it is (not the storage's state) is the likely cause.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        CredentialRetrievalError,
        FlexibleChecksumError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        ReadTimeoutError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        message = f"GetObject {uri}: {code or 'error'} (HTTP {status})"
        if code in RETRIED_CODES:
            return FetchFailed(message, reason=RETRIED_CODES[code])
        if code in REFUSED_CODES:
            return FetchRefused(message, reason=REFUSED_CODES[code])
        if status in (429, 503):
            return FetchFailed(message, reason=FetchReason.S3_THROTTLED)
        if status >= 500:
            return FetchFailed(message, reason=FetchReason.HTTP_5XX)
        return FetchRefused(message, reason=FetchReason.S3_REFUSED)
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError | TimeoutError):
        return FetchFailed(f"timed out reading {uri}", reason=FetchReason.TIMEOUT)
    if isinstance(
        exc,
        BotoConnectionError | HTTPClientError | IncompleteReadError | FlexibleChecksumError,
    ):
        # A refused or dropped connection, a body cut short, or one whose checksum does not
        # match what the storage holds: the transfer failed, the object may be fine.
        return FetchFailed(
            f"reading {uri} failed: {type(exc).__name__}", reason=FetchReason.CONNECTION_FAILED
        )
    if isinstance(exc, CredentialRetrievalError):
        # A provider of the default chain (container endpoint, STS) was asked and failed after
        # its own retries: it may answer later, and the role is likely right.
        return FetchFailed(
            f"no S3 credentials to read {uri}: {type(exc).__name__} from the default chain",
            reason=FetchReason.S3_CREDENTIALS_UNAVAILABLE,
        )
    if isinstance(exc, NoCredentialsError):
        # The client resolved its credentials when it was created; asking again will not find
        # any. The operator's setting (PIPELINE_S3_ACCESS_KEY_ID, a role) is what is missing.
        return FetchRefused(
            f"no S3 credentials to read {uri} (set PIPELINE_S3_ACCESS_KEY_ID and "
            "PIPELINE_S3_SECRET_ACCESS_KEY, or give the worker a role)",
            reason=FetchReason.S3_NO_CREDENTIALS,
        )
    if isinstance(exc, aiohttp.ClientError):  # in case one passes botocore's wrapping
        return FetchFailed(
            f"reading {uri} failed: {type(exc).__name__}", reason=FetchReason.CONNECTION_FAILED
        )
    if isinstance(exc, BotoCoreError):
        return FetchRefused(
            f"reading {uri} refused by the S3 client: {type(exc).__name__}",
            reason=FetchReason.S3_REFUSED,
        )
    return None


def _prepared_session(access: S3Access, limits: FetchLimits) -> tuple[AioSession, AioConfig]:
    """An aiobotocore session with the S3 models loaded, and the client's configuration.

    Blocking (imports aiobotocore, reads and parses the S3 service model): run it in a thread.
    The session's loader caches what it read, so creating the client on the loop is quick.
    """
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()
    loader = session.get_component("data_loader")
    loader.load_service_model("s3", "service-2")
    loader.load_service_model("s3", "endpoint-rule-set-1")
    config = AioConfig(
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
        # One attempt: the screener retries, with the same backoff and deadline as for URLs.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=MAX_POOL_CONNECTIONS,
        s3={"addressing_style": access.addressing_style},
    )
    return session, config


class S3Reader:
    """Reads ``s3`` content with one S3 client, made on first use and closed by :meth:`close`."""

    def __init__(self, limits: FetchLimits, access: S3Access) -> None:
        self.limits = limits
        self.access = access
        self._client: S3Client | None = None
        self._exit = contextlib.AsyncExitStack()
        self._creating: asyncio.Lock | None = None
        self._preparing: asyncio.Future[tuple[AioSession, AioConfig]] | None = None

    def __repr__(self) -> str:
        return f"S3Reader(endpoint={self.access.endpoint_url!r}, region={self.access.region!r})"

    async def _session(self) -> tuple[AioSession, AioConfig]:
        """The prepared session, made once in a thread. A caller that stops waiting (its time
        ran out) leaves the thread's work to the next one, which takes it over rather than
        loading everything again; a failed preparation is tried again by the next caller."""
        if self._preparing is None:
            self._preparing = asyncio.ensure_future(
                asyncio.to_thread(_prepared_session, self.access, self.limits)
            )
        try:
            return await asyncio.shield(self._preparing)
        except Exception:
            self._preparing = None
            raise

    async def _s3(self) -> S3Client:
        """The client, created once (concurrent first uploads wait for the same one).

        Unbounded in time (credentials from the default chain may wait on a provider that never
        answers): :meth:`get` bounds it with the access's ``client_timeout``. Cancelled, it
        leaves no client, and the next call starts again from the prepared session.
        """
        if self._client is not None:
            return self._client
        if self._creating is None:
            self._creating = asyncio.Lock()
        async with self._creating:
            if self._client is None:
                session, config = await self._session()
                credentials: dict[str, Any] = {}
                if self.access.access_key_id is not None:
                    credentials["aws_access_key_id"] = self.access.access_key_id
                if self.access.secret_access_key is not None:
                    secret = self.access.secret_access_key.get_secret_value()
                    credentials["aws_secret_access_key"] = secret
                self._client = await self._exit.enter_async_context(
                    session.create_client(
                        "s3",
                        endpoint_url=self.access.endpoint_url,
                        region_name=self.access.region,
                        config=config,
                        **credentials,
                    )
                )
        return self._client

    async def close(self) -> None:
        """Close the client and its connection pool (nothing happens if none was made)."""
        self._client = None
        if self._preparing is not None:
            if self._preparing.done() and not self._preparing.cancelled():
                self._preparing.exception()  # retrieved: a failure nobody awaited is no news
            self._preparing.cancel()  # the thread finishes on its own; its result is dropped
            self._preparing = None
        await self._exit.aclose()

    async def get(self, content: S3Content) -> bytes:
        """The object's bytes. Raises :class:`FetchFailed` (retry) or :class:`FetchRefused`.

        A bucket the access does not allow is refused (``s3_bucket_not_allowed``) before
        anything else. One attempt, bounded by the byte cap, by the access's client timeout
        while the client is made (``s3_client_timeout``, retryable), then by connect + 3 x read
        timeout in total.
        """
        if not bucket_allowed(content.bucket, self.access.buckets):
            raise FetchRefused(
                f"{content.uri}: bucket {content.bucket} is not one PIPELINE_S3_BUCKETS allows",
                reason=FetchReason.S3_BUCKET_NOT_ALLOWED,
            )
        request: dict[str, Any] = {"Bucket": content.bucket, "Key": content.key}
        if content.version_id is not None:
            request["VersionId"] = content.version_id
        try:
            client = await self._client_within_its_time(content.uri)
            async with asyncio.timeout(self.limits.connect_timeout + 3 * self.limits.read_timeout):
                response = await client.get_object(**request)
                return await self._body(response, content.uri)
        except PipelineError:
            raise
        except Exception as exc:
            failure = classify_failure(exc, content.uri)
            if failure is None:
                raise
            raise failure from None

    async def _client_within_its_time(self, uri: str) -> S3Client:
        """The client, or :class:`FetchFailed` (``s3_client_timeout``) when making it (or
        waiting for another upload making it) takes over the access's client timeout."""
        try:
            async with asyncio.timeout(self.access.client_timeout):
                return await self._s3()  # a client the settings cannot make fails every upload
        except TimeoutError:
            raise FetchFailed(
                f"making the S3 client to read {uri} took over {self.access.client_timeout:g}s "
                "(loading it, or a credential provider of the default chain not answering)",
                reason=FetchReason.S3_CLIENT_TIMEOUT,
            ) from None

    async def _body(self, response: GetObjectOutputTypeDef, uri: str) -> bytes:
        """The body, read to its end but never past the cap + 1 bytes; closed in any case (an
        unread body closes its connection rather than draining it)."""
        cap = self.limits.max_bytes
        async with response["Body"] as body:
            declared = response.get("ContentLength")
            if declared is not None and declared > cap:
                raise FetchRefused(
                    f"{uri} has {declared} bytes, over the cap of {cap}",
                    reason=FetchReason.TOO_LARGE_BYTES,
                )
            chunks: list[bytes] = []
            received = 0
            while chunk := await body.read(min(READ_CHUNK_BYTES, cap + 1 - received)):
                received += len(chunk)
                if received > cap:  # more than the Content-Length said, or none was given
                    raise FetchRefused(
                        f"{uri} exceeds the cap of {cap} bytes", reason=FetchReason.TOO_LARGE_BYTES
                    )
                chunks.append(chunk)
        return b"".join(chunks)
