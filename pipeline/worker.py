"""The worker's composition root: builds every collaborator from settings and runs Faust.

Owns start-up order and shutdown: embedded broker (only when no bootstrap servers are set),
hashing pool (warmed so the first upload does not pay imports and JIT loading), fetcher, sinks,
matcher, the Faust app; then the Faust worker until SIGINT/SIGTERM (it starts its web server,
then waits for the broker and creates the topics: see pipeline.startup); then the pool and the
embedded broker are stopped.
"""

from __future__ import annotations

import logging

import faust

from pipeline.adapters.alerts import AlertmanagerSink, WebhookSink
from pipeline.adapters.broker import EmbeddedBroker
from pipeline.adapters.fetch import Fetcher
from pipeline.alerting import AlertSink
from pipeline.app import create_app
from pipeline.config import Settings
from pipeline.core.matching import Matcher
from pipeline.core.types import Algorithm
from pipeline.demo.images import encode, synthetic_image
from pipeline.errors import ConfigError
from pipeline.hashpool import HashPool
from pipeline.hashprocess import HASH_PROCESS_MEMORY_BYTES
from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics
from pipeline.quarantines import WorkerQuarantine
from pipeline.screening import Screener

log = logging.getLogger(__name__)


def build_sinks(settings: Settings) -> list[AlertSink]:
    """The alert sinks the settings configure (none is valid: alerts wait in Kafka)."""
    sinks: list[AlertSink] = []
    if settings.webhook_url:
        if settings.webhook_secret is None:
            raise ConfigError("PIPELINE_WEBHOOK_SECRET is required with PIPELINE_WEBHOOK_URL")
        secret = settings.webhook_secret.get_secret_value().encode()
        sinks.append(WebhookSink(settings.webhook_url, secret, settings.alert_timeout_seconds))
    if settings.alertmanager_url:
        sinks.append(
            AlertmanagerSink(
                settings.alertmanager_url,
                settings.alert_timeout_seconds,
                resolve_after=settings.alertmanager_resolve_after_seconds,
            )
        )
    return sinks


def run_worker(settings: Settings) -> int:
    """Run one worker until interrupted; returns the exit code."""
    broker = _start_embedded_broker(settings) if settings.embedded else None
    bootstrap = broker.bootstrap_servers if broker else settings.bootstrap_servers or ""
    health = WorkerHealth(unhealthy_after_seconds=settings.service_unhealthy_after_seconds)

    def pool_broken(reason: str | None) -> None:
        health.pool_broken_reason = reason  # /livez: 503 while hashing processes cannot start

    pool = HashPool(
        settings.hash_processes,
        HASH_PROCESS_MEMORY_BYTES,
        timeout_seconds=settings.hash_timeout_seconds,
        on_broken=pool_broken,
    )
    try:
        if broker is not None:
            # The embedded broker's port is picked at start, and `pipeline submit` or
            # `hashlist publish` in another shell cannot reach this worker without it: give
            # the person a line to paste (on stdout and flushed, apart from the log).
            print(
                f"export PIPELINE_BOOTSTRAP_SERVERS={bootstrap}"
                "  # paste into another shell to submit to this worker",
                flush=True,
            )
        _start_pool(pool, settings)
        log_s3_buckets(settings)
        app = _build_app(settings, bootstrap, pool, health)
        log.info(
            "worker %s: web on http://%s:%d (/livez /readyz /metrics), %d hashing process(es)",
            settings.worker_id, settings.web_host, settings.web_port, settings.hash_processes,
        )  # fmt: skip
        return _run_faust(app, settings)
    finally:
        pool.close()
        if broker is not None:
            broker.stop()


def log_s3_buckets(settings: Settings) -> None:
    """Say which buckets ``s3`` uploads may name; when none, that they are all refused: as a
    warning if other PIPELINE_S3_* settings show ``s3`` uploads are expected."""
    if settings.s3_buckets:
        log.info("s3 uploads are read from buckets %s", ", ".join(sorted(settings.s3_buckets)))
        return
    expected = any((settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key_id))
    log.log(
        logging.WARNING if expected else logging.INFO,
        "PIPELINE_S3_BUCKETS is empty: every s3 upload is refused as s3_bucket_not_allowed",
    )


def _start_embedded_broker(settings: Settings) -> EmbeddedBroker:
    broker = EmbeddedBroker(settings.embedded_port).start()
    log.warning(
        "PIPELINE_BOOTSTRAP_SERVERS is unset: running on an embedded in-memory broker at %s "
        "(loopback only; everything is lost when the worker stops)",
        broker.bootstrap_servers,
    )
    return broker


def _start_pool(pool: HashPool, settings: Settings) -> None:
    """Start the hashing processes and warm each one: a real decode and every hash load
    Pillow's plugins and the lazily imported DCT (~0.1-0.2 s), so no upload's time limit pays
    for start-up."""
    pool.start()
    pool.warm_up(
        [
            (
                encode(synthetic_image(0, 64, 48)),
                settings.guard_limits(videos=bool(settings.video_formats)),
                tuple(Algorithm),
            )
        ]
        * max(1, settings.hash_processes)
    )


def _build_app(
    settings: Settings, bootstrap: str, pool: HashPool, health: WorkerHealth
) -> faust.App:
    metrics = PipelineMetrics()
    matcher = Matcher(settings.index_kind.value)
    quarantine = WorkerQuarantine(
        settings.flood_rule(), metrics, enabled=settings.quarantine_enabled
    )
    screener = Screener(
        settings,
        matcher=matcher,
        fetcher=Fetcher(settings.fetch_limits(), settings.s3_access()),
        pool=pool,
        metrics=metrics,
        limits=settings.guard_limits(videos=bool(settings.video_formats)),
        quarantine=quarantine,
    )
    return create_app(
        settings,
        bootstrap_servers=bootstrap,
        screener=screener,
        matcher=matcher,
        metrics=metrics,
        health=health,
        sinks=build_sinks(settings),
        quarantine=quarantine,
    )


def _run_faust(app: faust.App, settings: Settings) -> int:
    """Run the Faust worker until SIGINT/SIGTERM; its exit code."""
    worker = faust.Worker(
        app, loglevel=settings.log_level.lower(), quiet=True, override_logging=False
    )
    # Faust's start-up spinner writes backspaces and a cursor escape into stdout even when
    # quiet; in logs (and JSON log lines) that is garbage.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
