"""A real loopback HTTP server whose response never ends: the slowloris a fetch must survive.

It sends headers promising a large body, then one byte per ``interval`` seconds, so a read
timeout never fires and only a total deadline ends the fetch. Loopback only; it serves no
image content.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


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
