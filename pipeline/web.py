"""The worker's HTTP views: /livez, /readyz and /metrics.

Owns what each endpoint answers, read from :class:`~pipeline.health.WorkerHealth` (pure state)
and the metrics registry at request time; nothing here changes state. Faust serves them on
``PIPELINE_WEB_HOST:PIPELINE_WEB_PORT``.
"""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.health import WorkerHealth
from pipeline.metrics import PipelineMetrics


def register_views(app: faust.App, health: WorkerHealth, metrics: PipelineMetrics) -> None:
    """Add the three views to ``app``."""

    @app.page("/livez")
    class Livez(View):
        """200 while the worker can do its job or recover by itself; 503: restart it."""

        async def get(self, request: Request) -> Response:
            return self.json(health.report(), status=200 if health.live else 503)

    @app.page("/readyz")
    class Readyz(View):
        """200 once lists are loaded and screening runs; 503: route no uploads here."""

        async def get(self, request: Request) -> Response:
            return self.json(health.report(), status=200 if health.ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        """Prometheus text exposition of the worker's registry."""

        async def get(self, request: Request) -> Response:
            return self.bytes(
                generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
            )
