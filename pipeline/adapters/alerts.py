"""Alert sinks: a signed generic webhook, and Prometheus Alertmanager's v2 API.

Owns the wire formats and the classification of delivery failures: 2xx delivered; 429, 5xx,
timeouts and connection errors are :class:`~pipeline.errors.RetryableError` (the alert stays in
Kafka and is tried again); any other status is a :class:`~pipeline.errors.PermanentError`
(dead-lettered). Alerts describe a match (list, entry, category, distance, upload id), never
content.

Webhook: ``POST`` of the alert JSON with ``X-Signature-256: sha256=<hex HMAC-SHA256 of the raw
body>`` (verify with :func:`verify_signature`) and ``Idempotency-Key: <alert_id>`` so receivers
drop the duplicates at-least-once delivery can produce.

Alertmanager: one alert per match, labels ``alertname=KnownContentMatch``, list, category,
action, severity and the upload and entry ids. The ids are labels on purpose: Alertmanager
deduplicates by label set, so without them two different uploads matching the same list would
collapse into one page; the same upload redelivered collapses, which is what we want. These are
Alertmanager alert labels, not Prometheus metric labels. Each alert ends ``resolve_after``
seconds after its decision (``endsAt``, the same in every re-assertion: a pipeline that stops
re-asserting neither resolves alerts early nor keeps them for ever); Alertmanager keeps alerts
in memory only, so :mod:`pipeline.alerting` re-asserts them until then.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from pipeline.errors import PermanentError, RetryableError
from pipeline.models import AlertRecord

SIGNATURE_HEADER = "X-Signature-256"


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret`` (constant time)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


class SinkReason(enum.StrEnum):
    """Why delivering an alert to a sink failed (bounded: a metric label, a dead-letter field)."""

    REJECTED = "sink_rejected"
    UNAVAILABLE = "sink_unavailable"


class SinkRejected(PermanentError):
    """The sink answered that it will never take this alert (4xx other than 408/429)."""

    reason = SinkReason.REJECTED


class SinkUnavailable(RetryableError):
    """The sink is down, slow or overloaded; the alert waits in Kafka and is retried."""

    reason = SinkReason.UNAVAILABLE


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> None:
    try:
        async with session.post(url, data=body, headers=headers) as response:
            status = response.status
            await response.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise SinkUnavailable(f"cannot reach sink: {type(exc).__name__}") from None
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        raise SinkUnavailable(f"sink answered HTTP {status}")
    raise SinkRejected(f"sink refused the alert with HTTP {status}")


class _HttpSink:
    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class WebhookSink(_HttpSink):
    """POSTs each alert as signed JSON to a URL."""

    name = "webhook"

    def __init__(self, url: str, secret: bytes, timeout_seconds: float = 5.0) -> None:
        super().__init__(timeout_seconds)
        self._url = url
        self._secret = secret

    async def deliver(self, alert: AlertRecord) -> None:
        body = alert.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            "Idempotency-Key": alert.alert_id,
        }
        await _post(self.session(), self._url, body, headers)

    async def deliver_many(self, alerts: Sequence[AlertRecord]) -> None:
        for alert in alerts:
            await self.deliver(alert)

    def ends_at(self, alert: AlertRecord) -> datetime | None:
        """Never: a webhook receiver keeps what it is sent."""
        return None


#: Most alerts in one request to Alertmanager when re-asserting (bounded request bodies).
ALERTMANAGER_BATCH = 500


class AlertmanagerSink(_HttpSink):
    """Posts each alert to Alertmanager's ``/api/v2/alerts``."""

    name = "alertmanager"

    def __init__(
        self, base_url: str, timeout_seconds: float = 5.0, resolve_after: float = 3600
    ) -> None:
        super().__init__(timeout_seconds)
        self._url = base_url.rstrip("/") + "/api/v2/alerts"
        self._resolve_after = timedelta(seconds=resolve_after)

    def ends_at(self, alert: AlertRecord) -> datetime:
        """The alert's ``endsAt``: ``resolve_after`` seconds after the decision."""
        return alert.decided_at + self._resolve_after

    def payload(self, alert: AlertRecord) -> list[dict[str, Any]]:
        """The v2 API body for one alert."""
        return [self._item(alert)]

    def _item(self, alert: AlertRecord) -> dict[str, Any]:
        severity = "page" if alert.action == "block" else "ticket"
        return {
            "labels": {
                "alertname": "KnownContentMatch",
                "list": alert.list,
                "category": alert.category.value,
                "action": alert.action.value,
                "severity": severity,
                "upload_id": alert.upload_id,
                "entry_id": alert.entry_id,
            },
            "annotations": {
                "summary": f"Upload {alert.upload_id} matched {alert.list}/{alert.entry_id} "
                f"({alert.category.value}, {alert.algorithm.value} distance {alert.distance})",
                "list_version": alert.list_version,
                "worker_id": alert.worker_id,
            },
            "startsAt": alert.decided_at.isoformat(),
            "endsAt": self.ends_at(alert).isoformat(),
        }

    async def deliver(self, alert: AlertRecord) -> None:
        body = json.dumps(self.payload(alert)).encode()
        await _post(self.session(), self._url, body, {"Content-Type": "application/json"})

    async def deliver_many(self, alerts: Sequence[AlertRecord]) -> None:
        """Post in requests of at most :data:`ALERTMANAGER_BATCH` alerts."""
        for start in range(0, len(alerts), ALERTMANAGER_BATCH):
            items = [self._item(alert) for alert in alerts[start : start + ALERTMANAGER_BATCH]]
            body = json.dumps(items).encode()
            await _post(self.session(), self._url, body, {"Content-Type": "application/json"})
