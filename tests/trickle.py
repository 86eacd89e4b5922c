"""Real loopback HTTP servers that misbehave the ways a fetch must survive.

:func:`trickling_server` sends headers promising a large body, then one byte per ``interval``
seconds, so a read timeout never fires and only a total deadline ends the fetch.
:func:`silent_server` takes requests and never answers. :func:`endless_server` answers 200 with
a chunked body (no Content-Length) that never ends, counting what it sent. Loopback only; they
serve no image content.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@contextlib.contextmanager
def trickling_server(interval: float) -> Iterator[str]:
    """Serve until the block ends; yields the URL to fetch."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                         b"Content-Length: 1000000\r\n\r\n")  # fmt: skip
            while not stop.wait(interval):
                try:
                    conn.sendall(b"\xff")
                except OSError:
                    return

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow.jpg"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextlib.contextmanager
def _serving(answer: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """Accept connections on a loopback port, each answered by ``answer`` in its own thread,
    until the block ends; yields ``http://127.0.0.1:PORT``."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextlib.contextmanager
def silent_server(received: list[bytes] | None = None) -> Iterator[str]:
    """A server that reads requests and never answers (a hung backend); yields its base URL.
    What it read of each request is appended to ``received`` when one is given."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            request = conn.recv(65536)
            if received is not None:
                received.append(request)
            stop.wait()

    with _serving(answer) as url:
        yield url


@dataclass
class Sent:
    """Body bytes an :func:`endless_server` has sent so far."""

    bytes: int = 0


@contextlib.contextmanager
def endless_server(chunk_bytes: int = 64 * 1024) -> Iterator[tuple[str, Sent]]:
    """A server whose 200 answer is a chunked body with no end and no Content-Length, as fast
    as the client reads; yields its base URL and the count of body bytes sent."""
    sent = Sent()
    chunk = f"{chunk_bytes:x}\r\n".encode() + b"\0" * chunk_bytes + b"\r\n"

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            while not stop.is_set():
                try:
                    conn.sendall(chunk)
                except OSError:
                    return
                sent.bytes += chunk_bytes

    with _serving(answer) as url:
        yield url, sent
