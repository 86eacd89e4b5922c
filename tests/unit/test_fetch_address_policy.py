"""The SSRF policy without traffic: how a URL's host is read (as aiohttp will read it), and
which addresses are refused, every range and embedding included.

The loopback regression tests (a real server, a real fetch) are in test_fetch_ssrf.py.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata

import pytest
from aiohttp.helpers import is_ip_address
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from pipeline.fetch_policy import (
    FetchLimits,
    FetchRefused,
    address_allowed,
    checked_url,
    connect_address,
    embedded_ipv4,
)
from tests.unit.test_fetch_ssrf import ONLY_127_0_0_1, UNICODE_127_0_0_1, limits


@pytest.mark.parametrize("host", UNICODE_127_0_0_1)
def test_unicode_spellings_are_classified_as_the_literal_the_client_uses(host: str) -> None:
    url = URL(f"http://{host}/")
    address = connect_address(url)
    assert address is not None
    assert address_allowed(address) is False
    expected = "::ffff:127.0.0.1" if host.startswith("[") else "127.0.0.1"
    assert address == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "bad_url"),
        ("http:///x", "bad_url"),
        ("http://host:99999/x", "bad_url"),
        ("http://[::1/x", "bad_url"),
        ("http://[127.0.0.1]/x", "bad_url"),
        ("http://exa mple.com/x", "bad_url"),
        ("http://a..b/x", "bad_url"),
        ("http://127%2e0%2e0%2e1/x", "bad_url"),
        ("http://xn--8hb.0.0.1/x", "ssrf_blocked"),  # ends in a number, so not a name
        ("http://169\u3002254\u3002169\u3002254/latest/meta-data/", "ssrf_blocked"),
        ("http://[fe80::1%25eth0]/x", "ssrf_blocked"),
        ("http://[::ffff:169.254.169.254]/x", "ssrf_blocked"),
        ("http://[2002:a9fe:a9fe::]/x", "ssrf_blocked"),
        ("http://[64:ff9b::a9fe:a9fe]/x", "ssrf_blocked"),
    ],
)
def test_checked_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(FetchRefused) as caught:
        checked_url(url, limits())
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example/a.jpg?sig=1",
        "https://CDN.Example./a.jpg",
        "http://img_1.cdn-host.example:8080/a",
        "http://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/a",  # fullwidth letters: a name
        "http://b\u00fccher.example/a",  # IDNA: xn--bcher-kva.example
        "http://\u0661\u0662\u0667.\u0660.\u0660.\u0661/a",  # Arabic-Indic digits: a name
        "http://8.8.8.8/a",
        "http://[2606:4700::1111]/a",
        "http://[2002:808:808::1]/a",
        "http://[64:ff9b::808:808]/a",
    ],
)
def test_checked_url_passes_public_addresses_and_names(url: str) -> None:
    checked = checked_url(url, limits())
    assert checked.raw_host is not None
    assert checked.raw_host.isascii()


def test_checked_url_returns_the_object_it_checked() -> None:
    """The Fetcher hands aiohttp the checked yarl.URL itself, never a string to parse again."""
    url = URL("http://cdn.example/a.jpg")
    assert checked_url(url, limits()) is url


#: (address, allowed by default, allowed with allow_private)
RANGES = [
    ("8.8.8.8", True, True),
    ("127.0.0.1", False, True),
    ("10.1.2.3", False, True),
    ("169.254.169.254", False, True),  # cloud metadata
    ("100.64.0.1", False, True),  # CGNAT
    ("192.88.99.1", False, True),  # deprecated 6to4 relay anycast
    ("0.0.0.0", False, False),
    ("224.0.0.1", False, False),
    ("240.0.0.1", False, True),
    ("::1", False, True),
    ("::", False, False),
    ("fe80::1%eth0", False, True),
    ("fd00:ec2::254", False, True),  # AWS metadata over IPv6
    ("ff02::1", False, False),
    ("2606:4700::1111", True, True),
    # IPv4-mapped
    ("::ffff:127.0.0.1", False, True),
    ("::ffff:8.8.8.8", True, True),
    ("::ffff:0.0.0.0", False, False),
    # IPv4-compatible (deprecated)
    ("::127.0.0.1", False, True),
    ("::8.8.8.8", True, True),
    # 6to4
    ("2002:7f00:1::", False, True),
    ("2002:a9fe:a9fe::1", False, True),
    ("2002:c0a8:101::1", False, True),
    ("2002:808:808::1", True, True),
    ("2002:e000:1::", False, False),  # embeds 224.0.0.1
    # NAT64 (well-known prefix)
    ("64:ff9b::7f00:1", False, True),
    ("64:ff9b::a00:1", False, True),
    ("64:ff9b::808:808", True, True),
    ("64:ff9b::", False, False),  # embeds 0.0.0.0
    ("64:ff9b:1::808:808", False, True),  # local-use NAT64 (RFC 8215): reserved, not judged
    ("::ffff:0:808:808", False, True),  # IPv4-translated (SIIT): reserved
]


@pytest.mark.parametrize(("address", "by_default", "with_private"), RANGES)
def test_address_ranges(address: str, by_default: bool, with_private: bool) -> None:
    assert address_allowed(address) is by_default
    assert address_allowed(address, allow_private=True) is with_private


@pytest.mark.parametrize(
    "address",
    ["::ffff:10.1.2.3", "::10.1.2.3", "2002:a01:203::", "64:ff9b::10.1.2.3", "10.1.2.3"],
)
def test_allow_networks_match_the_embedded_ipv4_address(address: str) -> None:
    internal_cdn = (ipaddress.ip_network("10.0.0.0/8"),)
    assert address_allowed(address, allow_networks=internal_cdn)
    assert not address_allowed(address, allow_networks=(ipaddress.ip_network("11.0.0.0/8"),))


def test_allow_networks_match_the_ipv6_address_itself() -> None:
    nat64 = (ipaddress.ip_network("64:ff9b::/96"),)
    assert address_allowed("64:ff9b::a00:1", allow_networks=nat64)


@pytest.mark.parametrize("text", ["127.1", "2130706433", "localhost", "", "::ffff:1.2.3", "x%y"])
def test_address_allowed_is_false_for_anything_but_an_ip_literal(text: str) -> None:
    assert address_allowed(text, allow_private=True) is False


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::1.2.3.4", "1.2.3.4"),
        ("2002:102:304:5::6", "1.2.3.4"),
        ("64:ff9b::1.2.3.4", "1.2.3.4"),
        ("::1", None),
        ("::", None),
        ("2001:db8::1", None),
    ],
)
def test_embedded_ipv4(address: str, embedded: str | None) -> None:
    expected = ipaddress.IPv4Address(embedded) if embedded else None
    assert embedded_ipv4(ipaddress.IPv6Address(address)) == expected


# --- Properties ----------------------------------------------------------------------------


def _compatibility_variants() -> dict[str, list[str]]:
    """Every code point whose compatibility form (NFKC) is one ASCII digit or a full stop, plus
    the ideographic full stops IDNA maps to ".": the raw material of Unicode IP spellings.
    (Planes 0 and 1 hold them all; the scan takes a fraction of a second.)"""
    variants: dict[str, list[str]] = {char: [] for char in "0123456789."}
    for code in range(0x80, 0x20000):
        normal = unicodedata.normalize("NFKC", chr(code))
        if normal in variants:
            variants[normal].append(chr(code))
    variants["."] += ["\u3002", "\uff61"]
    return variants


_DIGIT_LIKE = _compatibility_variants()

ipv4_addresses = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
policies = st.sampled_from(
    [limits(), limits(allow_private=True), limits(allow_networks=ONLY_127_0_0_1)]
)


@st.composite
def unicode_spellings(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """``address`` with any of its characters swapped for a compatibility-equivalent one."""
    return "".join(draw(st.sampled_from([char, *_DIGIT_LIKE[char]])) for char in str(address))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), address=ipv4_addresses, policy=policies)
def test_a_unicode_spelling_of_an_address_is_judged_as_the_host_the_client_reads(
    data: st.DataObject, address: ipaddress.IPv4Address, policy: FetchLimits
) -> None:
    """yarl is the oracle here on purpose: whatever it turns the spelling into is what aiohttp
    connects to, so the check must agree with it. Most spellings become ``address`` itself;
    IDNA turns a few into names (the next property covers those) or refuses them."""
    spelled = data.draw(unicode_spellings(address))
    url = f"http://{spelled}/"
    try:
        client_host: str | None = URL(url).raw_host
    except ValueError:
        client_host = None  # the client cannot fetch it either
    try:
        checked_url(url, policy)
        outcome = "fetched"
    except FetchRefused as refused:
        outcome = refused.reason
    if client_host == str(address):
        allowed = address_allowed(address, policy.allow_private, policy.allow_networks)
        assert outcome == ("fetched" if allowed else "ssrf_blocked")
    elif client_host is None:
        assert outcome == "bad_url"


#: Characters a hostile host is made of: digits in many scripts, dots, hex markers, letters,
#: IPv6 punctuation, percent signs and a few IDNA-mapped oddities.
_HOSTILE_ALPHABET = sorted(
    {c for chars in _DIGIT_LIKE.values() for c in chars[:12]}
    | set("0123456789.xXabcdefABCDEF:%[]-_")
    | set("\u0660\u0661\u0966\u3007\u00ad\u200b\uff38\uff58\u2024\ufe52")
)


@settings(max_examples=1000, deadline=None)
@given(
    host=st.text(st.sampled_from(_HOSTILE_ALPHABET), min_size=1, max_size=24),
    policy=policies,
)
def test_whatever_passes_the_check_is_an_allowed_literal_or_a_name_to_resolve(
    host: str, policy: FetchLimits
) -> None:
    """No host reaches the client that it connects to without the policy having judged it:
    either an IP literal the policy allows, or a name that neither aiohttp nor the system's
    numeric address parser reads as an address (so it goes through the filtering resolver)."""
    try:
        checked = checked_url(f"http://{host}/", policy)
    except FetchRefused:
        return
    raw_host = checked.raw_host
    assert raw_host is not None
    assert raw_host.isascii()
    address = connect_address(checked)
    if address is not None:
        assert address_allowed(address, policy.allow_private, policy.allow_networks)
        return
    assert not is_ip_address(raw_host), raw_host
    with pytest.raises((socket.gaierror, UnicodeError)):
        socket.getaddrinfo(raw_host, 80, flags=socket.AI_NUMERICHOST)


@settings(max_examples=300, deadline=None)
@given(address=ipv4_addresses, policy=policies)
def test_an_ipv6_address_embedding_an_ipv4_one_is_judged_by_it(
    address: ipaddress.IPv4Address, policy: FetchLimits
) -> None:
    value = int(address)
    embeddings = [
        ipaddress.IPv6Address(0xFFFF_0000_0000 | value),  # IPv4-mapped
        ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1),  # 6to4
        ipaddress.IPv6Address((0x64_FF9B << 96) | value),  # NAT64
    ]
    if value > 1:
        embeddings.append(ipaddress.IPv6Address(value))  # IPv4-compatible
    expected = address_allowed(address, policy.allow_private, policy.allow_networks)
    for embedding in embeddings:
        assert embedded_ipv4(embedding) == address
        assert address_allowed(embedding, policy.allow_private, policy.allow_networks) is expected
