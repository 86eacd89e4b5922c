"""Hostile and broken input on a real broker: each ends as an error verdict plus a dead letter.

The worker must keep screening afterwards, and no dead letter or verdict may carry content.
URL uploads are served by a real HTTP server on 127.0.0.2, which the worker is explicitly allowed
to fetch from (PIPELINE_FETCH_ALLOW_NETWORKS); every other private address stays refused.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.broker import free_port
from pipeline.models import stand_in_upload_id
from tests.imagegen import encode, png_declaring, synthetic_image
from tests.integration.harness import KafkaIO, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_BYTES = 400_000
GOOD_JPEG = encode(synthetic_image(7))


@pytest.fixture
def image_server() -> Iterator[str]:
    """Serves /good.jpg, /huge (streamed past the cap), /redirect-to-metadata on 127.0.0.2."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/good.jpg":
                self.send_response(200)
                self.send_header("Content-Length", str(len(GOOD_JPEG)))
                self.end_headers()
                self.wfile.write(GOOD_JPEG)
            elif self.path == "/huge":
                self.send_response(200)  # no Content-Length: only the streamed cap can stop it
                self.end_headers()
                for _ in range(100):
                    self.wfile.write(b"\xff" * 65536)
            elif self.path == "/redirect-to-metadata":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.2", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.2:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def event_of(upload_id: str, content: dict[str, str]) -> dict[str, Any]:
    return {"upload_id": upload_id, "content": content}


def url_event(upload_id: str, url: str) -> dict[str, Any]:
    return event_of(upload_id, {"kind": "url", "url": url})


def test_bad_input_becomes_error_verdicts_and_dead_letters(
    kafka: KafkaIO,
    start_worker: Callable[..., WorkerProcess],
    image_server: str,
    tmp_path: Path,
) -> None:
    root = tmp_path / "uploads"
    root.mkdir()
    (root / "inside.jpg").write_bytes(GOOD_JPEG)
    (tmp_path / "outside.jpg").write_bytes(GOOD_JPEG)
    worker = start_worker(
        max_upload_bytes=str(MAX_BYTES),
        max_pixels="20000000",
        fetch_allow_networks="127.0.0.2/32",
        fetch_file_root=str(root),
    )
    closed_port = free_port()

    kafka.send("uploads", "not-json", b"{this is not json")
    kafka.send("uploads", "no-content", json.dumps({"upload_id": "no-content"}).encode())
    kafka.upload_event(url_event("unreachable", f"http://127.0.0.2:{closed_port}/x.jpg"))
    kafka.upload_event(url_event("ssrf-loopback", "http://127.0.0.1:6066/metrics"))
    kafka.upload_event(url_event("ssrf-metadata", "http://169.254.169.254/latest/meta-data/"))
    kafka.upload_event(url_event("ssrf-redirect", f"{image_server}/redirect-to-metadata"))
    kafka.upload_event(url_event("oversize-url", f"{image_server}/huge"))
    kafka.upload("oversize-inline", b"\xff\xd8" + b"\x00" * (MAX_BYTES + 10))
    kafka.upload("corrupt", GOOD_JPEG[: len(GOOD_JPEG) // 3] + b"garbage" * 50)
    kafka.upload("bomb", png_declaring(100_000, 100_000))
    kafka.upload("not-an-image", b"%PDF-1.7 " + b"x" * 2000)
    kafka.upload_event(
        {"upload_id": "escape-root", "content": {"kind": "path", "path": "../outside.jpg"}}
    )
    # Hostile input that used to escape as a bug (emit/other, with a traceback).
    too_deep = b"[" * 50_000 + b"]" * 50_000
    kafka.send("uploads", "deep-json", b'{"upload_id": "deep-json", "content": ' + too_deep + b"}")
    kafka.upload_event(
        {"upload_id": "nul-path", "content": {"kind": "path", "path": "inside.jpg\0"}}
    )
    # Ids: two over-long ones with one prefix, a repeated key, and records keyed by uploader.
    inside = {"kind": "path", "path": "inside.jpg"}
    long_ids = ["p" * 256 + "-1", "p" * 256 + "-2"]
    for long_id in long_ids:
        kafka.send("uploads", "uploader-7", json.dumps(event_of(long_id, inside)).encode())
    repeated = b'{"upload_id": "dup-a", "content": %s, "upload_id": "dup-b"}'
    kafka.send("uploads", "dup-key", repeated % json.dumps(inside).encode())
    kafka.send("uploads", "uploader-7", json.dumps(event_of("good-by-uploader", inside)).encode())
    # ...and good uploads after all of that: the worker keeps going.
    kafka.upload_event(url_event("good-url", f"{image_server}/good.jpg"))
    kafka.upload_event(
        {"upload_id": "good-path", "content": {"kind": "path", "path": "inside.jpg"}}
    )
    kafka.upload("good-inline", GOOD_JPEG)

    expected = {
        "no-content": ("parse", "invalid_event"),
        "unreachable": ("fetch", "connection_failed"),
        "ssrf-loopback": ("fetch", "ssrf_blocked"),
        "ssrf-metadata": ("fetch", "ssrf_blocked"),
        "ssrf-redirect": ("fetch", "ssrf_blocked"),
        "oversize-url": ("fetch", "too_large_bytes"),
        "oversize-inline": ("fetch", "too_large_bytes"),
        "corrupt": ("guard", "truncated"),
        "bomb": ("guard", "decompression_bomb"),
        "not-an-image": ("guard", "format_not_allowed"),
        "escape-root": ("fetch", "path_outside_root"),
        "deep-json": ("parse", "invalid_event"),
        "nul-path": ("fetch", "bad_path"),
        stand_in_upload_id(long_ids[0].encode()): ("parse", "invalid_event"),
        stand_in_upload_id(long_ids[1].encode()): ("parse", "invalid_event"),
        "dup-key": ("parse", "invalid_event"),  # no usable body id: keyed by the record key
    }
    good = {"good-url", "good-path", "good-inline", "good-by-uploader"}
    # The malformed event has no upload id, so its verdict is keyed by the Kafka key.
    verdicts = kafka.verdicts_for({*expected, *good, "not-json"})

    for upload_id in good:
        assert verdicts[upload_id]["action"] == "allow", verdicts[upload_id]
    assert verdicts["not-json"]["error"]["reason"] == "invalid_json"
    for upload_id, (stage, reason) in expected.items():
        verdict = verdicts[upload_id]
        assert verdict["action"] == "error", verdict
        assert (verdict["error"]["stage"], verdict["error"]["reason"]) == (stage, reason), (
            upload_id,
            verdict["error"],
        )

    every_id = {verdict["upload_id"] for verdict in kafka.wait_for("verdicts", bool)}
    assert not every_id & {"dup-a", "dup-b", "p" * 256, "uploader-7"}, "keyed by a wrong id"

    letters = kafka.wait_for("dead-letters", lambda rs: len(rs) >= len(expected) + 1)
    by_id = {letter["upload_id"]: letter for letter in letters}
    assert set(by_id) == {*expected, "not-json"}
    for upload_id, (stage, reason) in expected.items():
        assert (by_id[upload_id]["stage"], by_id[upload_id]["reason"]) == (stage, reason)
    assert by_id["unreachable"]["attempts"] == 2  # PIPELINE_FETCH_ATTEMPTS in the harness
    assert by_id["ssrf-metadata"]["attempts"] == 1  # refusals are not retried
    assert by_id["oversize-inline"]["original_event"]["content"] == {"kind": "inline"}
    assert by_id["ssrf-metadata"]["source"]["topic"] == kafka.topics.name("uploads")

    # No content anywhere: not the inline bytes, not their base64.
    fingerprint = base64.b64encode(GOOD_JPEG[100:160]).decode()[:40]
    for record in [*letters, *verdicts.values()]:
        text = json.dumps(record)
        assert "data_base64" not in text
        assert fingerprint not in text

    metrics = worker.metrics()
    assert 'screening_dead_letters_total{reason="ssrf_blocked",stage="fetch"} 3.0' in metrics
    assert 'screening_guard_rejections_total{reason="decompression_bomb"} 1.0' in metrics
    assert 'screening_dead_letters_total{reason="bad_path",stage="fetch"} 1.0' in metrics
    assert 'screening_events_processed_total{outcome="invalid"} 6.0' in metrics
    assert worker.alive()
