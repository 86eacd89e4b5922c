"""Fetch adapter edges that need no network: URL redaction is total, path uploads read only
regular files, off the event loop, and embedded mode picks the short session timeout."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path

import pytest

from pipeline.adapters.fetch import REDACTED_URL_MAX_CHARS, Fetcher, redact
from pipeline.config import Settings
from pipeline.fetch_policy import FetchLimits, FetchRefused
from pipeline.models import InlineContent, PathContent, UrlContent


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cdn.example/a.jpg?sig=secret#frag", "https://cdn.example/a.jpg"),
        ("http://user:pw@host:8080/p?q=1", "http://host:8080/p"),
        ("http://host:99999/x", "http://host:?/x"),
        ("http://host:abc/x", "http://host:?/x"),
        ("http://[::1/x", "<unparseable url>"),
        ("http://[::1]:81/x", "http://[::1]:81/x"),
        ("data:image/png;base64,iVBORw0KGgo=", "<data url>"),
        ("ftp://host/file", "<ftp url>"),
        ("", "<unknown url>"),
        ("not a url at all", "<unknown url>"),
    ],
)
def test_redact_is_total_and_keeps_no_query_or_credentials(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_redact_bounds_its_output() -> None:
    assert len(redact("https://cdn.example/" + "a" * 10_000)) == REDACTED_URL_MAX_CHARS


def test_a_url_with_an_invalid_port_is_refused_not_crashed() -> None:
    fetcher = Fetcher(FetchLimits(max_bytes=1000))
    content = UrlContent(url="http://cdn.example:99999/a.jpg")
    with pytest.raises(FetchRefused) as caught:
        asyncio.run(fetcher.fetch(content))
    assert caught.value.reason == "bad_url"


def fetch_inline(data_base64: str, max_bytes: int = 1000) -> bytes:
    fetcher = Fetcher(FetchLimits(max_bytes=max_bytes))
    return asyncio.run(fetcher.fetch(InlineContent(data_base64=data_base64)))


def test_inline_base64_decodes_strictly() -> None:
    assert fetch_inline(base64.b64encode(b"\xff\xd8 bytes").decode()) == b"\xff\xd8 bytes"
    for bad in ("abc$", "YWJj\nZGVm", "YWJ", "YWJjZA=x"):
        with pytest.raises(FetchRefused) as caught:
            fetch_inline(bad)
        assert caught.value.reason == "bad_base64", bad


def test_inline_content_over_the_cap_is_refused_before_decoding() -> None:
    with pytest.raises(FetchRefused) as caught:
        fetch_inline(base64.b64encode(b"x" * 2000).decode())
    assert caught.value.reason == "too_large_bytes"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "root"
    directory.mkdir()
    (directory / "image.jpg").write_bytes(b"\xff\xd8" + b"x" * 100)
    (directory / "big.bin").write_bytes(b"x" * 2000)
    (directory / "sub").mkdir()
    os.mkfifo(directory / "pipe")
    return directory


def fetch_path(root: Path, path: str, max_bytes: int = 1000) -> bytes:
    fetcher = Fetcher(FetchLimits(max_bytes=max_bytes, file_root=root, read_timeout=5))
    return asyncio.run(fetcher.fetch(PathContent(path=path)))


def test_a_regular_file_under_the_root_is_read(root: Path) -> None:
    assert fetch_path(root, "image.jpg") == b"\xff\xd8" + b"x" * 100


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("path", "reason"), [("pipe", "not_a_file"), ("sub", "not_a_file"),
                                               ("big.bin", "too_large_bytes"),
                                               ("missing.jpg", "not_found"),
                                               ("../outside", "path_outside_root"),
                                               ("image.jpg\x00.png", "bad_path")])  # fmt: skip
def test_anything_but_a_small_regular_file_is_refused_promptly(
    root: Path, path: str, reason: str
) -> None:
    # Opening a FIFO for reading blocks until a writer appears: without the non-blocking open
    # and the file-type check this test hangs until pytest-timeout kills it.
    started = time.monotonic()
    with pytest.raises(FetchRefused) as caught:
        fetch_path(root, path)
    assert caught.value.reason == reason
    assert time.monotonic() - started < 5


def test_path_reads_run_off_the_event_loop(root: Path) -> None:
    """While a file is read, the loop keeps running other tasks (heartbeats, web views)."""
    fetcher = Fetcher(FetchLimits(max_bytes=1000, file_root=root))
    loop_thread: list[int] = []
    read_thread: list[int] = []
    original = fetcher._path

    def recording_path(relative: str) -> bytes:
        import threading

        read_thread.append(threading.get_ident())
        return original(relative)

    fetcher._path = recording_path  # type: ignore[method-assign]

    async def main() -> bytes:
        import threading

        loop_thread.append(threading.get_ident())
        return await fetcher.fetch(PathContent(path="image.jpg"))

    assert asyncio.run(main()).startswith(b"\xff\xd8")
    assert read_thread
    assert read_thread != loop_thread


def test_embedded_mode_uses_the_short_session_timeout() -> None:
    assert Settings(bootstrap_servers=None).broker_session_timeout_seconds == 6.0
    assert Settings(bootstrap_servers="kafka:9092").broker_session_timeout_seconds == 10.0
    explicit = Settings(bootstrap_servers="kafka:9092", session_timeout_seconds=30)
    assert explicit.broker_session_timeout_seconds == 30.0
