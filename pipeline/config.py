"""The one frozen settings object, read from ``PIPELINE_*`` environment variables.

Owns every tunable of the pipeline and its validation. This is the only module that reads the
environment; everything else receives a :class:`Settings` (or the plain values it needs) as an
argument. Secrets are :class:`pydantic.SecretStr`, so they print masked. An invalid value fails at
start with one readable :class:`~pipeline.errors.ConfigError` listing every bad variable.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import os
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from pipeline.core.types import LIST_ACTIONS, Action
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.core.guard import GuardLimits
    from pipeline.core.quarantine import FloodRule
    from pipeline.core.videomatch import VpdqRule
    from pipeline.fetch_policy import FetchLimits, S3Access

ENV_PREFIX = "PIPELINE_"
#: The prefix of a ``prefix*`` pattern in PIPELINE_S3_BUCKETS: the start of a bucket name (maybe
#: empty: ``*`` alone allows every bucket).
S3_BUCKET_PREFIX_PATTERN = r"(?:[a-z0-9][a-z0-9.-]{0,61})?"
#: Long-poll cap used against the embedded broker (see Settings.fetch_max_wait_ms).
EMBEDDED_FETCH_MAX_WAIT_MS = 50
#: Consumer-group session timeouts (seconds) when PIPELINE_SESSION_TIMEOUT_SECONDS is unset.
#: The embedded broker makes a new group's first join wait half the session timeout, so it gets
#: the short one; Apache Kafka keeps the usual default.
EMBEDDED_SESSION_TIMEOUT_SECONDS = 6.0
DEFAULT_SESSION_TIMEOUT_SECONDS = 10.0
#: Faust's per-partition fetch size (its consumer_max_fetch_size), the most a fetch asks for.
DEFAULT_PARTITION_FETCH_BYTES = 1024 * 1024


class IndexKind(enum.StrEnum):
    """Which Hamming index backs perceptual matching. ``auto`` applies the documented rule."""

    AUTO = "auto"
    BKTREE = "bktree"
    MIH = "mih"
    SCAN = "scan"


class LogLevel(enum.StrEnum):
    """The levels PIPELINE_LOG_LEVEL and ``--log-level`` accept (in any case)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


#: The video containers the guard knows (``pipeline.core.videolimits.VIDEO_FORMATS``, which this
#: module does not import: that would load PyAV's and Pillow's neighbours for every command).
VIDEO_CONTAINERS = frozenset({"MP4", "MOV", "M4V", "3GP", "WEBM", "MKV"})


class Settings(BaseSettings):
    """Every setting, with its environment variable ``PIPELINE_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", case_sensitive=False
    )

    # --- Guard: limits applied to untrusted bytes before and during decode ------------------
    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0, description="Byte cap per upload.")
    max_pixels: int = Field(64_000_000, gt=0, description="Pixel cap (width x height).")
    max_frames: int = Field(1000, gt=0, description="Frame cap for animated formats.")
    allowed_formats: Annotated[frozenset[str], NoDecode] = Field(
        frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "HEIF", "AVIF"}),
        description="Pillow format names accepted (comma-separated in the environment).",
    )
    draft_size: int = Field(
        128,
        ge=32,
        description="JPEGs are decoded at the smallest DCT scale still >= this many pixels a side.",
    )

    # --- Videos (pipeline/core/video.py) ------------------------------------------------------
    video_formats: Annotated[frozenset[str], NoDecode] = Field(
        VIDEO_CONTAINERS,
        description="Video containers screened (comma-separated; empty: none).",
    )
    video_max_duration_seconds: float = Field(1800.0, gt=0, description="Longest video.")
    video_max_pixels: int = Field(3840 * 2160, gt=0, description="Pixel cap of a video frame.")
    video_max_frame_rate: float = Field(240.0, gt=0, description="Highest frame rate.")
    video_max_streams: int = Field(16, gt=0, description="Most streams of any kind.")
    video_codecs: Annotated[frozenset[str], NoDecode] = Field(
        frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "h263"}),
        description="FFmpeg video decoders run on uploads (comma-separated).",
    )
    video_sample_interval_seconds: float = Field(
        1.0, gt=0, description="Frames sampled: one per interval plus scene changes."
    )
    vpdq_query_match_percent: float = Field(
        80.0,
        gt=0,
        le=100,
        description="A video matches a vPDQ entry when this share (%) of its usable frames "
        "match some entry frame (vPDQ's convention: 80)...",
    )
    vpdq_entry_match_percent: float = Field(
        0.0,
        ge=0,
        le=100,
        description="...and this share (%) of the entry's frames are matched (vPDQ's: 0, so a "
        "clip cut out of a listed video matches).",
    )

    # --- Matching ----------------------------------------------------------------------------
    index_kind: IndexKind = IndexKind.AUTO
    on_error: Literal[Action.REVIEW, Action.BLOCK] | None = Field(
        None,
        description="Action added to the `error` verdict of unscreenable uploads (`none`, "
        "`review` or `block`).",
    )

    quarantine_enabled: bool = Field(
        True,
        description="Quarantine an entry that matches a large share of uploads (see "
        "pipeline/core/quarantine.py): its matches ask for review until an operator lifts it.",
    )
    quarantine_window_uploads: int = Field(
        1000, gt=0, description="Flood quarantine: the last this many uploads are counted."
    )
    quarantine_min_uploads: int = Field(
        500,
        gt=0,
        description="Flood quarantine judges nothing until the window holds this many uploads.",
    )
    quarantine_share: float = Field(
        0.02,
        gt=0,
        lt=1,
        description="Flood quarantine: an entry matching more than this share of the window's "
        "uploads is quarantined.",
    )

    # --- Kafka -------------------------------------------------------------------------------
    bootstrap_servers: str | None = Field(
        None, description="Kafka bootstrap servers; unset starts the embedded broker."
    )
    app_id: str = "upload-screening"
    worker_id: str = Field(default_factory=_default_worker_id)
    topic_uploads: str = "uploads"
    topic_verdicts: str = "verdicts"
    topic_blocks: str = "blocks"
    topic_alerts: str = "alerts"
    topic_dead_letters: str = "dead-letters"
    topic_hashlists: str = "hashlists"
    topic_partitions: int = Field(4, gt=0)
    topic_replication: int = Field(1, gt=0)
    session_timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="Consumer-group session timeout. Unset: 10 s on Apache Kafka, 6 s on the "
        "embedded broker (see Settings.broker_session_timeout_seconds).",
    )
    heartbeat_interval_seconds: float = Field(1.0, gt=0)
    broker_fetch_max_wait_ms: int | None = Field(
        None,
        gt=0,
        description="Cap on a consumer fetch's long poll. Unset: the clients' defaults (Faust "
        "1500 ms), right for Apache Kafka; the embedded broker uses 50 (see README).",
    )
    hash_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=0, description="0 hashes in-process."
    )
    hash_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest one file (image or video) may take to decode and hash in a hashing "
        "process (running time only: waiting for a free process does not count).",
    )
    max_in_flight: int = Field(
        32, gt=0, description="Uploads screened at once (each verdict is written when ready)."
    )
    max_uncommitted: int = Field(
        1000,
        gt=0,
        description="Uploads taken from the stream but not yet committable (screening, or done "
        "behind an older unfinished upload of their partition); the worker takes no more until "
        "the oldest finishes. Bounds memory while a slow upload holds its partition's commits.",
    )
    consumer_prefetch_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of upload records the worker reads ahead of screening: past this "
        "size Faust's buffer of uploads (which counts records, 4096, otherwise) pauses the "
        "partitions that hand it more until it has drained to half, and one fetch of the "
        "Kafka client asks for at most this much, and at most 1 MiB (see "
        "consumer_fetch_bytes). With max_in_flight it bounds the worker's memory (see README).",
    )
    producer_max_request_bytes: int = Field(
        1_000_000,
        gt=0,
        description="The worker producer's max request size (Kafka max.request.size). Output "
        "records are bounded far below the default; a record it refuses is replaced by a slim "
        "copy and a dead letter.",
    )
    emit_backoff_max_seconds: float = Field(
        10.0,
        gt=0,
        description="Cap on the backoff between retries of outputs the broker did not accept "
        "(the batch waits: its offsets are committed only once every output is written).",
    )
    producer_flush_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="How long CLI commands (submit, hashlist publish/retract) wait for the "
        "broker to confirm every record they produced.",
    )
    broker_connect_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="How long CLI commands (submit, hashlist publish/retract, demo-traffic) try "
        "to reach the bootstrap servers before they give up with one line (exit 2); also each "
        "attempt of a starting worker (which keeps trying).",
    )
    producer_request_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="How long the worker's producer tries to get a batch of outputs to the "
        "broker before it fails them, and the worker's own retry (with backoff) takes over. "
        "Faust's default is 1200 s: a stalled broker would hold a batch for 20 minutes.",
    )
    broker_unreachable_after_seconds: float = Field(
        15.0,
        gt=0,
        description="/readyz answers 503 (and the log says so once) when no request of the "
        "worker to the broker succeeded for this long: no fetch response (empty ones count), "
        "no produce acknowledgement.",
    )
    topic_check_interval_seconds: float = Field(
        10.0,
        gt=0,
        description="How often the worker checks that its topics still exist with the ids "
        "they had (re-creating vanished ones) while no output is written; every output batch "
        "is checked before it is counted anyway.",
    )

    topic_confirm_window_seconds: float = Field(
        0.05,
        ge=0,
        description="Shortest time between two checks that the written outputs' topics still "
        "exist: every output batch acknowledged meanwhile is confirmed by one metadata request "
        "(one per batch cost the worker process more CPU than anything else it does per "
        "upload). Delays each batch's confirmation by at most this much, none when idle.",
    )

    # --- Supervision of background services (hash-list feed, alert delivery) ------------------
    service_backoff_max_seconds: float = Field(
        30.0, gt=0, description="Cap on the backoff between restarts of a failed service."
    )
    service_unhealthy_after_seconds: float = Field(
        300.0,
        gt=0,
        description="/livez answers 503 once a service has been failing continuously this long.",
    )

    # --- Embedded broker (only when bootstrap_servers is unset) --------------------------------
    embedded_port: int = Field(0, ge=0, le=65535, description="0 picks a free loopback port.")

    # --- Web: /livez /readyz /metrics ------------------------------------------------------
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)

    # --- Fetch -------------------------------------------------------------------------------
    fetch_connect_timeout_seconds: float = Field(3.0, gt=0)
    fetch_read_timeout_seconds: float = Field(10.0, gt=0)
    fetch_max_redirects: int = Field(3, ge=0)
    fetch_allow_private: bool = Field(
        False, description="Allow fetching from loopback/private/link-local addresses (SSRF)."
    )
    fetch_allow_networks: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(),
        description="CIDRs fetched from even if private, e.g. an internal CDN (comma-separated).",
    )
    fetch_file_root: Path | None = Field(None, description="Root for `path` uploads; unset = off.")
    fetch_attempts: int = Field(3, gt=0)
    fetch_backoff_seconds: float = Field(0.5, ge=0)
    fetch_deadline_seconds: float = Field(
        30.0,
        gt=0,
        description="Total time one upload's fetch may take, every attempt and wait included "
        "(a server trickling bytes resets the read timeout, never this).",
    )

    # --- S3-API object storage (``s3`` content) -------------------------------------------------
    s3_endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#\s@]+/?$",  # no user:password@ (it would be shown in reprs)
        description="S3-API endpoint, e.g. http://minio:9000; unset: AWS's endpoint for the "
        "region. The operator's address: the SSRF policy of URL uploads does not apply to it.",
    )
    s3_region: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",  # what botocore accepts
        description="Region the requests are signed for; unset: the default AWS chain "
        "(AWS_REGION, ~/.aws/config), else us-east-1.",
    )
    s3_access_key_id: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="With the secret: the credentials of S3 reads; unset: the default AWS "
        "credential chain (environment, shared files, container or instance role).",
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="The secret of PIPELINE_S3_ACCESS_KEY_ID (never logged)."
    )
    s3_addressing_style: Literal["auto", "virtual", "path"] = Field(
        "auto",
        description="`path` puts the bucket in the URL path (MinIO and most S3-compatible "
        "servers), `virtual` in the host name; `auto` lets the client choose.",
    )
    s3_buckets: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(),
        description="Buckets `s3` uploads may name (comma-separated): bucket names, or a prefix "
        "ending in `*` (`uploads-*`; `*` alone: any bucket the credentials reach). Empty: every "
        "`s3` upload is refused as s3_bucket_not_allowed, without a request.",
    )
    s3_client_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Time to make the S3 client on the first `s3` upload: loading it and "
        "resolving credentials through the default chain (container endpoint, instance "
        "metadata, STS). Over it the attempt fails as s3_client_timeout and is retried.",
    )

    # --- Alerting sinks ----------------------------------------------------------------------
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    alertmanager_url: str | None = None
    alert_timeout_seconds: float = Field(5.0, gt=0)
    alert_backoff_max_seconds: float = Field(30.0, gt=0)
    alertmanager_resolve_after_seconds: float = Field(
        3600.0,
        gt=0,
        description="How long a match alert stays active in Alertmanager after its decision "
        "(its endsAt). An alert that could not be delivered before then is not sent (counted "
        "as expired).",
    )
    alertmanager_reassert_seconds: float = Field(
        60.0,
        gt=0,
        description="How often the active match alerts are sent to Alertmanager again, so a "
        "restarted Alertmanager (it keeps alerts in memory only) has them back.",
    )
    alertmanager_active_max: int = Field(
        10_000,
        ge=1,
        description="Most active match alerts a worker re-asserts (about 2 KB each); beyond it "
        "the ones ending soonest are dropped from re-assertion (counted, logged).",
    )

    # --- Logging -----------------------------------------------------------------------------
    log_level: LogLevel = LogLevel.INFO
    log_json: bool = False

    @field_validator("on_error", mode="before")
    @classmethod
    def _none_is_no_action(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip().lower()  # in any case, as PIPELINE_LOG_LEVEL
        if value == "none":
            return None
        if value not in LIST_ACTIONS:
            raise ValueError(f"expected none, review or block, got {value!r}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("allowed_formats", "video_formats", mode="before")
    @classmethod
    def _split_formats(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip().upper() for part in value.split(",") if part.strip())
        return value

    @field_validator("video_formats")
    @classmethod
    def _known_video_formats(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = value - VIDEO_CONTAINERS
        if unknown:
            raise ValueError(
                f"unknown video formats {sorted(unknown)}; known: {sorted(VIDEO_CONTAINERS)}"
            )
        return value

    @field_validator("video_codecs", mode="before")
    @classmethod
    def _split_codecs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    @field_validator("fetch_allow_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad CIDR
        return frozenset(value)

    @field_validator("s3_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: Any) -> Any:
        import re

        from pipeline.models import S3_BUCKET_PATTERN

        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for pattern in value:
            prefix = pattern.removesuffix("*")
            if "*" in prefix or not (
                re.fullmatch(S3_BUCKET_PREFIX_PATTERN, prefix)
                if pattern.endswith("*")
                else re.fullmatch(S3_BUCKET_PATTERN, pattern)
            ):
                raise ValueError(
                    f"{pattern[:80]!r} is neither a bucket name (3 to 63 lowercase letters, "
                    "digits, dots and hyphens) nor such a prefix followed by '*'"
                )
        return frozenset(value)

    @model_validator(mode="after")
    def _window_holds_what_is_in_flight(self) -> Settings:
        if self.max_uncommitted < self.max_in_flight:
            raise ValueError("max_uncommitted must be >= max_in_flight")
        return self

    @model_validator(mode="after")
    def _s3_key_with_its_secret(self) -> Settings:
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "set both PIPELINE_S3_ACCESS_KEY_ID and PIPELINE_S3_SECRET_ACCESS_KEY, or neither"
            )
        return self

    @model_validator(mode="after")
    def _quarantine_window_holds_its_minimum(self) -> Settings:
        if self.quarantine_min_uploads > self.quarantine_window_uploads:
            raise ValueError("quarantine_min_uploads must be <= quarantine_window_uploads")
        return self

    @property
    def embedded(self) -> bool:
        """True when the worker must start its own loopback broker."""
        return not self.bootstrap_servers

    @property
    def broker_session_timeout_seconds(self) -> float:
        """The consumer-group session timeout to use: the setting, else 6 s on the embedded
        broker (a new group's first join waits half of it there) and 10 s on Apache Kafka."""
        if self.session_timeout_seconds is not None:
            return self.session_timeout_seconds
        if self.embedded:
            return EMBEDDED_SESSION_TIMEOUT_SECONDS
        return DEFAULT_SESSION_TIMEOUT_SECONDS

    @property
    def fetch_max_wait_ms(self) -> int | None:
        """The long-poll cap to apply, if any: the setting, else 50 ms on the embedded broker.

        tansu does not end a fetch's long poll when records arrive on one of several partitions
        in the request, so every fetch waits its full maximum (measured: ~715 ms added per
        upload at Faust's 1500 ms). Apache Kafka answers as soon as data arrives.
        """
        if self.broker_fetch_max_wait_ms is not None:
            return self.broker_fetch_max_wait_ms
        return EMBEDDED_FETCH_MAX_WAIT_MS if self.embedded else None

    @property
    def consumer_fetch_bytes(self) -> int:
        """The most one fetch of the worker's consumer asks the broker for, per partition and
        in all: the prefetch bound, at most Faust's per-partition default of 1 MiB. A larger
        record still comes whole (Kafka sends a partition's first record batch whatever its
        size), so this never stalls a partition."""
        return min(self.consumer_prefetch_bytes, DEFAULT_PARTITION_FETCH_BYTES)

    @property
    def faust_data_dir(self) -> Path:
        """Faust's data directory: ``upload-screening-faust-<uid>`` in the temp directory
        (``$TMPDIR``, else ``/tmp``).

        Faust's own default is relative to the working directory, which a container's user may
        not write (the image's is root-owned: the worker could not start) and which should not
        collect a directory per app id. The worker keeps no Faust tables, so Faust only creates
        empty directories here; one per user, so users never share (or block) each other's.
        """
        return Path(tempfile.gettempdir()) / f"upload-screening-faust-{os.getuid()}"

    def vpdq_rule(self) -> VpdqRule:
        """The shares a video must reach to match a vPDQ list entry."""
        from pipeline.core.videomatch import VpdqRule

        return VpdqRule(self.vpdq_query_match_percent, self.vpdq_entry_match_percent)

    def guard_limits(self, videos: bool = False) -> GuardLimits:
        """The guard's limits (bytes, pixels, frames, formats, JPEG draft size) for uploads,
        with the ``PIPELINE_VIDEO_*`` limits when ``videos`` (else videos are
        ``format_not_allowed``).

        Imported here, not at the top: the guard loads Pillow, which ``pipeline --help`` and
        the Kafka commands never need."""
        from pipeline.core.guard import GuardLimits
        from pipeline.core.videolimits import VideoLimits

        video = VideoLimits(
            max_bytes=self.max_upload_bytes,
            allowed_formats=self.video_formats,
            max_duration_seconds=self.video_max_duration_seconds,
            max_pixels=self.video_max_pixels,
            max_frame_rate=self.video_max_frame_rate,
            max_streams=self.video_max_streams,
            codecs=self.video_codecs,
            sample_interval_seconds=self.video_sample_interval_seconds,
        )
        return GuardLimits(
            max_bytes=self.max_upload_bytes,
            max_pixels=self.max_pixels,
            max_frames=self.max_frames,
            allowed_formats=self.allowed_formats,
            draft_size=self.draft_size,
            video=video if videos else None,
        )

    def flood_rule(self) -> FloodRule:
        """The flood-quarantine rule (window, minimum uploads, share). Imported here: the core's
        matching loads numpy, which ``pipeline --help`` never needs."""
        from pipeline.core.quarantine import FloodRule

        return FloodRule(
            window_uploads=self.quarantine_window_uploads,
            min_uploads=self.quarantine_min_uploads,
            share=self.quarantine_share,
        )

    def fetch_limits(self) -> FetchLimits:
        """What fetching an upload may do: byte cap, timeouts (seconds), redirects, address
        policy and the root of ``path`` uploads. Imported here: the fetcher loads aiohttp."""
        from pipeline.fetch_policy import FetchLimits

        return FetchLimits(
            max_bytes=self.max_upload_bytes,
            connect_timeout=self.fetch_connect_timeout_seconds,
            read_timeout=self.fetch_read_timeout_seconds,
            max_redirects=self.fetch_max_redirects,
            allow_private=self.fetch_allow_private,
            allow_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in sorted(self.fetch_allow_networks)
            ),
            file_root=self.fetch_file_root,
        )

    def s3_access(self) -> S3Access:
        """Where, as whom and from which buckets ``s3`` content is read: endpoint, region,
        credentials (the secret stays a SecretStr), addressing style, the allowed buckets and
        the client's creation timeout; unset ones leave the AWS defaults in force."""
        from pipeline.fetch_policy import S3Access

        return S3Access(
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            access_key_id=self.s3_access_key_id,
            secret_access_key=self.s3_secret_access_key,
            addressing_style=self.s3_addressing_style,
            buckets=tuple(sorted(self.s3_buckets)),
            client_timeout=self.s3_client_timeout_seconds,
        )


#: How alike (difflib's ratio) an unknown variable and a setting's variable must be for the
#: warning to suggest the setting: 0.8 catches a dropped, doubled or swapped letter
#: (PIPELINE_BOOTSTRAP_SERVER) without proposing unrelated settings.
SUGGESTION_CUTOFF = 0.8


def setting_variables() -> tuple[str, ...]:
    """The environment variable of every setting, e.g. ``PIPELINE_LOG_LEVEL``."""
    return tuple(f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields)


def unknown_setting_variables(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """One warning per ``PIPELINE_*`` variable that names no setting, with the nearest
    setting's variable when one is close.

    Settings ignore such variables, so a typo is silent otherwise: a misspelt
    PIPELINE_BOOTSTRAP_SERVER leaves the servers unset and starts the embedded broker instead.
    ``environ`` defaults to the process environment. Names compare in any case, as settings
    are read.
    """
    known = setting_variables()
    warnings = []
    for name in sorted(os.environ if environ is None else environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=SUGGESTION_CUTOFF)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a setting and is ignored{hint}")
    return tuple(warnings)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (overrides win); raise one readable ConfigError."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
