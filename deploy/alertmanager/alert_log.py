"""A tiny Alertmanager webhook receiver that writes every notification to stdout.

docker-compose.yml runs it as the `alert-log` service so the stack delivers its alerts somewhere
out of the box (`docker compose logs -f alert-log`): one JSON line per alert with the receiver
(the URL path Alertmanager posted to), status, name, severity, summary and runbook URL, and all
labels. It is a stand-in for a real pager: replace the receivers in alertmanager.yml with
PagerDuty, Slack or e-mail (examples there). Python standard library only, so it runs on the
plain python image. Listens on $ALERT_LOG_HOST:$ALERT_LOG_PORT (0.0.0.0:9095 when unset).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Alertmanager's webhook bodies are small; refuse anything absurd instead of reading it.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Requests are served on threads: one writer at a time, each line in one write, so two
#: notifications arriving together never share a line (print() writes the newline apart).
_OUTPUT = threading.Lock()


def alert_lines(receiver: str, notification: dict[str, Any]) -> list[str]:
    """One JSON line per alert of an Alertmanager webhook notification (version 4)."""
    lines = []
    for alert in notification.get("alerts", []):
        labels = alert.get("labels", {})
        annotations = alert.get("annotations", {})
        record = {
            "receiver": receiver,
            "status": alert.get("status"),
            "alertname": labels.get("alertname"),
            "severity": labels.get("severity"),
            "summary": annotations.get("summary"),
            "runbook_url": annotations.get("runbook_url"),
            "starts_at": alert.get("startsAt"),
            "labels": labels,
        }
        lines.append(json.dumps(record, sort_keys=True))
    return lines


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            self.send_error(413 if length else 411)
            return
        try:
            notification = json.loads(self.rfile.read(length))
        except ValueError:
            self.send_error(400, "body is not JSON")
            return
        receiver = self.path.strip("/") or "default"
        lines = "".join(f"{line}\n" for line in alert_lines(receiver, notification))
        with _OUTPUT:
            sys.stdout.write(lines)
            sys.stdout.flush()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per alert is the log; access lines would only repeat it


def main() -> int:
    host = os.environ.get("ALERT_LOG_HOST", "0.0.0.0")  # noqa: S104 (a container's interface)
    port = int(os.environ.get("ALERT_LOG_PORT", "9095"))
    server = ThreadingHTTPServer((host, port), Handler)
    # As a container's PID 1, Python would ignore SIGTERM and `docker compose stop` would wait
    # for its SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"alert-log: listening on {host}:{port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
