"""What a fetch may do and how it fails: limits, the SSRF policy, the error vocabulary.

Owns the rules :mod:`pipeline.adapters.fetch` applies (that module does the I/O). The SSRF
policy: only http/https; loopback, private, link-local (incl. cloud metadata), CGNAT,
multicast, reserved and unspecified addresses are refused unless explicitly allowed
(:func:`address_allowed`; an IPv6 address that embeds an IPv4 one, i.e. IPv4-mapped,
IPv4-compatible, 6to4 or NAT64, is judged by the IPv4 address it embeds). Every hop's URL is
parsed once into the :class:`yarl.URL` object handed to aiohttp and its host is classified
exactly as aiohttp will read it (:func:`checked_url`: IDNA-normalised, so ``127。0。0。1`` or
fullwidth digits are the IP literal they become; non-ASCII hosts and legacy numeric IPv4
spellings such as ``127.1`` or ``0x7f.1`` are refused, never resolved). DNS names pass here and
are judged by the fetcher's resolver with the same :func:`address_allowed`. Also where, as whom
and from which buckets ``s3`` content is read (:class:`S3Access`, :func:`bucket_allowed`: the
events name the object, so the operator's allow-list, not the worker's credentials, bounds what
an event producer can make the worker read). Pure: no I/O.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from pydantic import SecretStr
from yarl import URL

from pipeline.errors import PermanentError, RetryableError


class FetchReason(enum.StrEnum):
    """Why a fetch failed or was refused (bounded: a metric label and a dead-letter field)."""

    BAD_BASE64 = "bad_base64"
    BAD_PATH = "bad_path"
    BAD_URL = "bad_url"
    CONNECTION_FAILED = "connection_failed"
    DNS_FAILED = "dns_failed"
    FILE_ROOT_UNSET = "file_root_unset"
    HTTP_429 = "http_429"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    IO_ERROR = "io_error"
    NOT_A_FILE = "not_a_file"
    NOT_FOUND = "not_found"
    PATH_OUTSIDE_ROOT = "path_outside_root"
    #: The storage refused the worker's credentials access to the object (403 AccessDenied).
    S3_ACCESS_DENIED = "s3_access_denied"
    #: The credentials were refused (unknown key id, bad signature, expired token): a setting.
    S3_BAD_CREDENTIALS = "s3_bad_credentials"
    #: The bucket is not in PIPELINE_S3_BUCKETS: refused before any request to the storage.
    S3_BUCKET_NOT_ALLOWED = "s3_bucket_not_allowed"
    #: Making the S3 client (loading it, resolving credentials through the default chain: a
    #: container endpoint, instance metadata, STS) took over PIPELINE_S3_CLIENT_TIMEOUT_SECONDS.
    S3_CLIENT_TIMEOUT = "s3_client_timeout"
    #: A credential provider of the default chain failed to answer with credentials (container
    #: endpoint or STS down or erring); retried.
    S3_CREDENTIALS_UNAVAILABLE = "s3_credentials_unavailable"
    #: The object is archived (Glacier, Deep Archive) and must be restored before it is read.
    S3_INVALID_OBJECT_STATE = "s3_invalid_object_state"
    #: No credentials: PIPELINE_S3_* unset and nothing in the default AWS credential chain.
    S3_NO_CREDENTIALS = "s3_no_credentials"
    S3_NO_SUCH_BUCKET = "s3_no_such_bucket"
    S3_NO_SUCH_KEY = "s3_no_such_key"
    S3_NO_SUCH_VERSION = "s3_no_such_version"
    #: Any other refusal by the storage (4xx): the request will not succeed as it is.
    S3_REFUSED = "s3_refused"
    #: SlowDown, throttling or 503: the storage asks for fewer requests; retried.
    S3_THROTTLED = "s3_throttled"
    SSRF_BLOCKED = "ssrf_blocked"
    TIMEOUT = "timeout"
    TOO_LARGE_BYTES = "too_large_bytes"
    TOO_MANY_REDIRECTS = "too_many_redirects"


class FetchFailed(RetryableError):
    """Fetching may succeed later (timeout, refused connection, 5xx, 429)."""


class FetchRefused(PermanentError):
    """Fetching will not succeed (SSRF, too large, 4xx, bad reference)."""


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """What a fetch may do. Seconds and bytes."""

    max_bytes: int
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_redirects: int = 3
    allow_private: bool = False
    #: Networks allowed even though private (an internal CDN, a test server); checked first.
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    file_root: Path | None = None


@dataclass(frozen=True, slots=True)
class S3Access:
    """Where, as whom and from which buckets ``s3`` content is read. The endpoint is the
    operator's (no SSRF policy applies to it); buckets and keys come from events and are
    validated by the wire model, and the bucket must be one ``buckets`` allows
    (:func:`bucket_allowed`; none by default, so ``s3`` uploads are refused until the operator
    names the upload buckets).

    Unset fields fall back to the AWS defaults: AWS's own endpoint for the region, the region
    and the credentials from the default chain (environment, shared files, container or
    instance role). The secret is kept as a :class:`~pydantic.SecretStr` and left out of the
    repr, so printing this object shows neither it nor its length.
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = field(default=None, repr=False)
    #: ``auto``, ``virtual`` (bucket in the host name) or ``path`` (bucket in the path; MinIO
    #: and most S3-compatible servers on one host name want it).
    addressing_style: str = "auto"
    #: Bucket names and ``prefix*`` patterns ``s3`` content may name (:func:`bucket_allowed`).
    buckets: tuple[str, ...] = ()
    #: Seconds to make the client: import, S3 model and credentials from the default chain.
    client_timeout: float = 5.0


def bucket_allowed(bucket: str, allowed: tuple[str, ...]) -> bool:
    """True when ``bucket`` is one of ``allowed``: equal to a name there, or starting with the
    prefix of a pattern ending in ``*`` (``uploads-*``; ``*`` alone allows every bucket).

    Exact comparison, no case folding: bucket names are lowercase under S3's rules and the
    settings refuse any other spelling. Nothing allowed (the default) allows no bucket.
    """
    return any(
        bucket.startswith(pattern[:-1]) if pattern.endswith("*") else bucket == pattern
        for pattern in allowed
    )


IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The well-known NAT64 prefix (RFC 6052): a NAT64 gateway forwards to the last 32 bits.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
#: Deprecated IPv4-compatible addresses (RFC 4291 2.5.5.1), ::A.B.C.D; :: and ::1 are not.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
#: Deprecated 6to4 relay anycast (RFC 7526): a gateway into 6to4, which this Python's
#: ``ipaddress`` still calls global, so it is refused here explicitly.
_SIX_TO_FOUR_RELAY_ANYCAST = ipaddress.IPv4Network("192.88.99.0/24")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address delivers to, or None when it embeds none.

    IPv4-mapped (``::ffff:a.b.c.d``, a dual-stack socket connects to a.b.c.d), IPv4-compatible
    (``::a.b.c.d``), 6to4 (``2002:aabb:ccdd::/48``) and NAT64 (``64:ff9b::a.b.c.d``) addresses
    reach the embedded IPv4 address, so that address is what the SSRF policy must judge.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:  # 2002::/16 (RFC 3056)
        return address.sixtofour
    if address in _NAT64_WELL_KNOWN or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def address_allowed(
    address: str | IPAddress,
    allow_private: bool = False,
    allow_networks: tuple[IPNetwork, ...] = (),
) -> bool:
    """True when connecting to this IP address is acceptable for fetching user-supplied URLs.

    ``address`` is an IP address or its canonical text (an IPv6 one may carry a ``%zone``).
    Total: anything else, a DNS name or a legacy numeric spelling like ``127.1`` included, is
    False, never an exception. An address that embeds an IPv4 address (:func:`embedded_ipv4`)
    is judged by that IPv4 address; ``allow_networks`` may match either of the two.
    """
    if isinstance(address, str):
        text = address.split("%", 1)[0] if ":" in address else address
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
    elif isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        address = ipaddress.IPv6Address(int(address))  # the zone does not change the policy
    embedded = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if any(
        candidate in network
        for candidate in (address, embedded)
        if candidate is not None
        for network in allow_networks
    ):
        return True
    target = embedded if embedded is not None else address
    if target.is_multicast or target.is_unspecified:
        return False
    if allow_private:
        return True
    return target.is_global and not target.is_reserved and target not in _SIX_TO_FOUR_RELAY_ANYCAST


#: A DNS name as the resolver will be asked for it (ASCII after IDNA, letters, digits, hyphens
#: and the underscores some CDNs use; optionally fully qualified with one trailing dot).
_DNS_NAME = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}\.?", re.IGNORECASE)
_DNS_NAME_MAX_CHARS = 254  # 253 plus the trailing dot of a fully qualified name
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _legacy_numeric_ipv4(host: str) -> bool:
    """True for an ASCII host that is not a dotted quad but that some parser reads as IPv4.

    The WHATWG URL rule ("ends in a number": the last label, after one trailing dot, is decimal
    digits or 0x-prefixed hex) covers what ``inet_aton``/``getaddrinfo`` accept: ``127.1``,
    ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.0.0.1.``. aiohttp's own test (all digits
    once dots are removed) is included so no host it treats as an IP literal counts as a name.
    """
    if host.replace(".", "").isdigit():
        return True
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    last = labels[-1]
    if last.isascii() and last.isdigit():
        return True
    return last[:2].lower() == "0x" and _HEX_DIGITS.issuperset(last[2:])


def connect_address(url: URL) -> IPAddress | None:
    """The IP address aiohttp connects to for ``url`` without resolving it, or None for a DNS
    name (which then goes through the filtering resolver).

    Reads ``url.raw_host``, the host exactly as aiohttp uses it: already IDNA-normalised by
    yarl, so ``127。0。0。1`` and ``１２７.０.０.１`` are the literal ``127.0.0.1`` here. The
    zone of a scoped IPv6 literal is dropped. Raises :class:`FetchRefused`: ``bad_url`` when
    the URL has no host or the host is neither an IP literal nor a DNS name; ``ssrf_blocked``
    when the host is not ASCII (not IDNA-encoded, so a layer below might still map it to an
    address) or is a legacy numeric IPv4 spelling that parsers disagree about.
    """
    host = url.raw_host
    if not host:
        raise FetchRefused("only http(s) URLs with a host are fetched", reason=FetchReason.BAD_URL)
    if not host.isascii():
        raise FetchRefused(
            "URL host is not ASCII after IDNA encoding", reason=FetchReason.SSRF_BLOCKED
        )
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise FetchRefused(
                "URL host is not a valid IPv6 address", reason=FetchReason.BAD_URL
            ) from None
    try:
        return ipaddress.IPv4Address(host)  # dotted quad only: no leading zeros, four parts
    except ValueError:
        pass
    if _legacy_numeric_ipv4(host):
        raise FetchRefused(
            "URL host is a numeric IPv4 spelling other than a dotted quad",
            reason=FetchReason.SSRF_BLOCKED,
        )
    if len(host) > _DNS_NAME_MAX_CHARS or not _DNS_NAME.fullmatch(host):
        raise FetchRefused("URL host is not a DNS name or IP address", reason=FetchReason.BAD_URL)
    return None


def checked_url(url: str | URL, limits: FetchLimits) -> URL:
    """The URL, parsed once into the object to hand to aiohttp, after the SSRF checks.

    Pass the returned object (never the string again) to the client, so the host checked is
    the host connected to. Raises :class:`FetchRefused`: ``bad_url`` for a URL that is not
    http(s), does not parse (bad port, bad IPv6, IDNA failure) or has no usable host;
    ``ssrf_blocked`` for an IP literal the policy refuses (:func:`address_allowed`) or a host
    :func:`connect_address` refuses. A DNS name passes here; the resolver checks its addresses.
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        # yarl splits the authority of a URL made by join() only when asked: ask here, so a
        # bad host or port is a bad URL rather than an error inside aiohttp.
        parsed.raw_host, parsed.port  # noqa: B018
    except ValueError:  # UnicodeError (IDNA) included
        raise FetchRefused("URL cannot be parsed", reason=FetchReason.BAD_URL) from None
    if parsed.scheme not in ("http", "https"):
        raise FetchRefused("only http(s) URLs with a host are fetched", reason=FetchReason.BAD_URL)
    address = connect_address(parsed)
    if address is not None and not address_allowed(
        address, limits.allow_private, limits.allow_networks
    ):
        raise FetchRefused(
            f"URL points at {address}, which the SSRF policy refuses",
            reason=FetchReason.SSRF_BLOCKED,
        )
    return parsed
