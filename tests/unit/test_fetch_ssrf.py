"""SSRF on loopback: a URL's host is judged as the address the HTTP client connects to.

Regression for Unicode spellings of IP literals (``127。0。0。1``, fullwidth digits, ...): the URL
check used to read them as names and leave them to the resolver, while aiohttp (through yarl's
IDNA step) turned them into the literal and connected without resolving: on the first hop, on
redirect hops, and past ``allow_networks``. Legacy numeric IPv4 spellings (``127.1``,
``0x7f.1``) were retried or resolved instead of refused.

These tests use only the Fetcher's public interface, so they run unchanged against the code
before the fix (and fail there). Traffic goes only to servers on loopback, which is what a
bypass reaches; every other address range is checked with the classifier alone, in
test_fetch_address_policy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from pipeline.adapters.fetch import Fetcher
from pipeline.fetch_policy import FetchFailed, FetchLimits, FetchRefused
from pipeline.models import UrlContent

PAYLOAD = b"bytes served on loopback"
ONLY_127_0_0_1 = (ipaddress.ip_network("127.0.0.1/32"),)

#: Spellings of 127.0.0.1 that yarl (so aiohttp) normalises to the literal 127.0.0.1.
UNICODE_127_0_0_1 = [
    "127\u30020\u30020\u30021",  # IDEOGRAPHIC FULL STOP
    "127\uff0e0\uff0e0\uff0e1",  # FULLWIDTH FULL STOP
    "127\uff610\uff610\uff611",  # HALFWIDTH IDEOGRAPHIC FULL STOP
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # FULLWIDTH DIGITs
    "\U0001d7cf\U0001d7d0\U0001d7d5.\U0001d7ce.\U0001d7ce.\U0001d7cf",  # MATHEMATICAL BOLD DIGITs
    "\u2460\u2461\u2466.\u24ea.\u24ea.\u2460",  # CIRCLED DIGITs
    "\uff11\uff12\uff17\u3002\uff10\uff0e0\uff61\U0001d7cf",  # all of them mixed
    "[::ffff:127\u30020\u30020\u30021]",  # inside an IPv4-mapped IPv6 literal
]
#: The same for 127.0.0.2: loopback, but outside an allow-list of 127.0.0.1/32.
UNICODE_127_0_0_2 = [
    "127\u30020\u30020\u30022",
    "127\uff0e0\uff0e0\uff0e2",
    "127\uff610\uff610\uff612",
    "\uff11\uff12\uff17.\uff10.\uff10.\uff12",
]
#: Numeric IPv4 spellings other than a dotted quad that inet_aton/getaddrinfo (and so some
#: client or resolver) read as an address. All of these mean 127.0.0.1.
LEGACY_NUMERIC_127_0_0_1 = [
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "0x7F.0.0.1",
    "0177.0.0.1",
    "017700000001",
    "127.000.000.001",
    "127.0.0.1.",
    "\uff12\uff11\uff13\uff10\uff17\uff10\uff16\uff14\uff13\uff13",  # 2130706433, fullwidth
    "0\uff58\uff17\uff46.1",  # 0x7f.1, fullwidth x, 7 and f
]


@dataclass
class LoopbackServer:
    """An HTTP server on 127.0.0.1 (and, where the OS allows, 127.0.0.2) on one port."""

    port: int = 0
    #: (listening address, path) of every request received, in order.
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: Location sent by ``/redirect``, verbatim (``{port}`` is filled in).
    redirect_to: str = ""


@contextlib.asynccontextmanager
async def loopback_server() -> AsyncIterator[LoopbackServer]:
    server = LoopbackServer()

    async def handle(request: web.Request) -> web.Response:
        listener = request.transport.get_extra_info("sockname")[0] if request.transport else "?"
        server.requests.append((listener, request.path))
        if request.path == "/redirect":
            # Not web.HTTPFound: it would normalise the Location through yarl before sending,
            # and the point is that the client receives the Unicode spelling itself.
            location = server.redirect_to.format(port=server.port)
            return web.Response(status=302, headers={"Location": location})
        return web.Response(body=PAYLOAD)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        server.port = runner.addresses[0][1]
        # Linux routes all of 127.0.0.0/8 to lo, so a second listener makes a fetch of
        # 127.0.0.2 succeed (and a bypass visible as bytes). Elsewhere that fetch fails to
        # connect instead, which the assertions below still tell apart from a refusal.
        with contextlib.suppress(OSError):
            await web.TCPSite(runner, "127.0.0.2", server.port).start()
        yield server
    finally:
        await runner.cleanup()


def fetch_via_loopback(
    url: str, limits: FetchLimits, redirect_to: str = ""
) -> tuple[bytes | FetchRefused | FetchFailed, list[tuple[str, str]]]:
    """Fetch ``url`` (``{port}`` filled in) with a server listening; the outcome (bytes or the
    error) and the requests the server saw."""

    async def main() -> tuple[bytes | FetchRefused | FetchFailed, list[tuple[str, str]]]:
        async with loopback_server() as server:
            server.redirect_to = redirect_to
            fetcher = Fetcher(limits)
            try:
                outcome: bytes | FetchRefused | FetchFailed = await fetcher.fetch(
                    UrlContent(url=url.format(port=server.port))
                )
            except (FetchRefused, FetchFailed) as exc:
                outcome = exc
            finally:
                await fetcher.close()
            return outcome, server.requests

    return asyncio.run(main())


def limits(
    allow_private: bool = False,
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (),
) -> FetchLimits:
    return FetchLimits(
        max_bytes=1000,
        connect_timeout=2.0,
        read_timeout=2.0,
        allow_private=allow_private,
        allow_networks=allow_networks,
    )


def assert_refused_as_ssrf(outcome: bytes | FetchRefused | FetchFailed) -> None:
    assert isinstance(outcome, FetchRefused), f"not refused: {outcome!r}"
    assert outcome.reason == "ssrf_blocked"


def test_the_loopback_server_is_reachable_when_allowed() -> None:
    """Control: the refusals below are the policy's, not a server that never answers. A
    Unicode spelling of an allowed address is that address, and is fetched like it."""
    for host in ("127.0.0.1", "\uff11\uff12\uff17.\uff10.\uff10.\uff11"):
        outcome, requests = fetch_via_loopback(
            f"http://{host}:{{port}}/img", limits(allow_networks=ONLY_127_0_0_1)
        )
        assert outcome == PAYLOAD
        assert requests == [("127.0.0.1", "/img")]


@pytest.mark.parametrize("host", UNICODE_127_0_0_1)
def test_unicode_spellings_of_loopback_are_refused_on_the_first_hop(host: str) -> None:
    outcome, requests = fetch_via_loopback(f"http://{host}:{{port}}/img", limits())
    assert_refused_as_ssrf(outcome)
    assert requests == []


@pytest.mark.parametrize("host", UNICODE_127_0_0_2)
def test_unicode_spellings_outside_allow_networks_are_refused(host: str) -> None:
    outcome, requests = fetch_via_loopback(
        f"http://{host}:{{port}}/img", limits(allow_networks=ONLY_127_0_0_1)
    )
    assert_refused_as_ssrf(outcome)
    assert requests == []


@pytest.mark.parametrize("host", UNICODE_127_0_0_2)
def test_a_redirect_to_a_unicode_spelling_outside_allow_networks_is_refused(host: str) -> None:
    outcome, requests = fetch_via_loopback(
        "http://127.0.0.1:{port}/redirect",
        limits(allow_networks=ONLY_127_0_0_1),
        redirect_to=f"http://{host}:{{port}}/img",
    )
    assert_refused_as_ssrf(outcome)
    assert requests == [("127.0.0.1", "/redirect")]  # the allowed hop only


def test_a_redirect_to_a_unicode_spelling_of_an_allowed_address_is_followed() -> None:
    """Control for the redirect test above: the Location's spelling is judged as the address
    it is, so the same redirect to a spelling of the allowed 127.0.0.1 is followed."""
    outcome, requests = fetch_via_loopback(
        "http://127.0.0.1:{port}/redirect",
        limits(allow_networks=ONLY_127_0_0_1),
        redirect_to="http://127\u30020\u30020\u30021:{port}/img",
    )
    assert outcome == PAYLOAD
    assert requests == [("127.0.0.1", "/redirect"), ("127.0.0.1", "/img")]


@pytest.mark.parametrize("host", LEGACY_NUMERIC_127_0_0_1)
def test_legacy_numeric_spellings_are_refused_not_resolved_or_retried(host: str) -> None:
    # Even with private addresses allowed: parsers disagree about what these mean.
    outcome, requests = fetch_via_loopback(
        f"http://{host}:{{port}}/img", limits(allow_private=True)
    )
    assert_refused_as_ssrf(outcome)
    assert requests == []
