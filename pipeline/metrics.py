"""Every Prometheus metric of the pipeline, defined in one place on an injectable registry.

Owns names, types, help texts and label vocabularies. Conventions: prefix ``screening_``; base
units in names; counters end in ``_total``; freshness as ``*_timestamp_seconds``; one
stage-latency histogram with a bounded ``stage`` label. Label values come only from enums or
configured list names, never from upload ids, user ids, URLs, hash values or exception text;
an unknown reason is counted as ``other``. Every label combination that can be known up front
is created at zero, so dashboards and alert rules see series before the first event.
The README's metrics table documents each metric; a contract test keeps them in step. The
registry also carries prometheus_client's standard ``process_*`` metrics of the worker process.
"""

from __future__ import annotations

import collections
import enum
import platform
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from pipeline import __version__
from pipeline.adapters.alerts import SinkReason
from pipeline.adapters.hashlist_topic import RECORD_KINDS
from pipeline.alerting import AlertReason, Outcome, ReassertOutcome
from pipeline.core.guard import GuardReason
from pipeline.core.hashlist import VPDQ_ALGORITHM, Category
from pipeline.core.orientation import Orientation
from pipeline.core.regions import RegionKind
from pipeline.core.types import Action, Algorithm
from pipeline.errors import ErrorReason
from pipeline.fetch_policy import FetchReason
from pipeline.hashpool import HashReason
from pipeline.models import EmitReason, ParseReason, Stage

PREFIX = "screening"

#: Stages timed by the stage-latency histogram.
TIMED_STAGES: tuple[str, ...] = ("fetch", "decode", "hash", "match", "emit")
OUTCOMES: tuple[str, ...] = ("screened", "error", "invalid")
SINKS: tuple[str, ...] = ("webhook", "alertmanager")
DELIVERY_OUTCOMES: tuple[str, ...] = tuple(outcome.value for outcome in Outcome)
#: Sinks that forget alerts and get the active ones re-asserted.
REASSERTING_SINKS: tuple[str, ...] = ("alertmanager",)
#: What a hash-list record was about, by its key (``unknown``: a key of no known shape).
LIST_OPERATIONS: tuple[str, ...] = RECORD_KINDS
#: applied; held (an entry stored but not matched: its list has no config yet); rejected.
LIST_UPDATE_OUTCOMES: tuple[str, ...] = ("applied", "held", "rejected")
#: Background services the worker supervises (restarted with backoff when they fail).
#: One alert delivery per sink, so one sink's outage never delays another's alerts.
SERVICES: tuple[str, ...] = ("hashlist_feed", *(f"alert_delivery_{sink}" for sink in SINKS))
#: The records an upload produces (fixed names, not the configured topic names).
OUTPUTS: tuple[str, ...] = ("verdicts", "blocks", "alerts", "dead_letters")
#: The worker's topics by kind (fixed names, not the configured topic names).
TOPIC_KINDS: tuple[str, ...] = ("uploads", "hashlists", *OUTPUTS)
#: What was done with an output record the producer did not get accepted.
OUTPUT_FAILURE_HANDLING: tuple[str, ...] = ("retried", "replaced", "dropped")

#: Every reason a dead letter or a guard rejection may carry, derived from the enums next to the
#: errors that carry them; anything else counts as "other".
REASON_VOCABULARIES: tuple[type[enum.StrEnum], ...] = (
    ParseReason,
    FetchReason,
    GuardReason,
    HashReason,
    AlertReason,
    SinkReason,
    EmitReason,
    ErrorReason,
)
DEAD_LETTER_REASONS: frozenset[str] = frozenset(
    reason.value for vocabulary in REASON_VOCABULARIES for reason in vocabulary
)

#: Most quarantined entries a worker names in ``screening_entry_quarantined_timestamp_seconds``,
#: the one metric with an ``entry_id`` label. Entries are quarantined only when they match a
#: large share of uploads, so a few at a time is the expected worst case; the cap keeps a broken
#: list from turning into thousands of series. The per-list count and the worker's log name
#: every one, past the cap too.
MAX_NAMED_QUARANTINES = 50

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BYTES_BUCKETS = (1e3, 1e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8)
#: Index builds: milliseconds for a small list, ~2 s a 10M-entry one, minutes a 50M one.
BUILD_BUCKETS = (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def consumer_lag(highwater: int | None, position: int | None) -> int | None:
    """Messages in a partition not yet consumed: the fetch high watermark minus the consumer's
    position (next offset to fetch); None when either is not known yet."""
    if highwater is None or position is None:
        return None
    return max(0, highwater - position)


class PipelineMetrics:
    """The pipeline's metrics, registered on ``registry`` (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, p = self.registry, PREFIX
        self.build_info = Info(f"{p}_build", "Version of the running pipeline.", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})
        # The standard process_* metrics of this process (Linux): resident memory above all,
        # which the README's memory bound and OOM runbook read. Hashing processes not included.
        ProcessCollector(registry=r)
        self._define_screening(r, p)
        self._define_flow(r, p)
        self._define_broker(r, p)
        self._define_lists(r, p)
        self._define_outputs_and_health(r, p)
        self._define_quarantine(r, p)
        self._newest_list_record = 0.0
        self._lag_series: set[tuple[str, int]] = set()
        self._named_quarantines: set[tuple[str, str]] = set()
        self._quarantine_lists: set[str] = set()
        self._create_known_series()

    def _define_screening(self, r: CollectorRegistry, p: str) -> None:
        """Uploads in, verdicts and matches out, and how long each stage took."""
        self.events_received = Counter(
            f"{p}_events_received_total", "Upload events consumed.", registry=r
        )
        self.events_processed = Counter(
            f"{p}_events_processed_total",
            "Upload events finished, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.verdicts = Counter(
            f"{p}_verdicts_total", "Verdicts emitted, by action.", ["action"], registry=r
        )
        self.matches = Counter(
            f"{p}_matches_total",
            "List entries matched, by list, category and algorithm.",
            ["list", "category", "algorithm"],
            registry=r,
        )
        self.variant_matches = Counter(
            f"{p}_variant_matches_total",
            "Perceptual matches by how the upload differs from the listed picture: its"
            " orientation and the kind of region that matched.",
            ["orientation", "region"],
            registry=r,
        )
        self.dead_letters = Counter(
            f"{p}_dead_letters_total",
            "Dead letters written, by stage and reason.",
            ["stage", "reason"],
            registry=r,
        )
        self.videos = Counter(
            f"{p}_videos_total",
            "Video uploads hashed (guarded, sampled, every sampled frame hashed).",
            registry=r,
        )
        self.video_seconds = Counter(
            f"{p}_video_seconds_total",
            "Seconds of video hashed (each video's duration from its header).",
            registry=r,
        )
        self.guard_rejections = Counter(
            f"{p}_guard_rejections_total",
            "Uploads refused by the image or video guard, by reason.",
            ["reason"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            f"{p}_stage_duration_seconds",
            "Time spent per upload in each stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            f"{p}_upload_to_verdict_seconds",
            "From the upload's received_at (or consumption) to its verdict being written.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fetch_bytes = Histogram(
            f"{p}_fetch_size_bytes",
            "Size of fetched upload content.",
            buckets=BYTES_BUCKETS,
            registry=r,
        )

    def _define_flow(self, r: CollectorRegistry, p: str) -> None:
        """What is in flight and how far behind the worker is."""
        self.in_flight = Gauge(
            f"{p}_events_in_flight", "Uploads being screened right now.", registry=r
        )
        self.pool_queue = Gauge(
            f"{p}_hash_pool_queue_depth", "Hash jobs submitted and not yet finished.", registry=r
        )
        self.consumer_lag = Gauge(
            f"{p}_consumer_lag_messages",
            "Uploads not yet consumed, per partition this worker owns (fetch high watermark - "
            "position).",
            ["topic", "partition"],
            registry=r,
        )
        self.last_event = Gauge(
            f"{p}_last_event_timestamp_seconds",
            "Unix time the last upload was screened.",
            registry=r,
        )

    def _define_broker(self, r: CollectorRegistry, p: str) -> None:
        """Whether this worker reaches its broker (see pipeline.connectivity)."""
        self.broker_last_fetch = Gauge(
            f"{p}_broker_last_fetch_timestamp_seconds",
            "Unix time of the last fetch response from the broker (empty ones count: the "
            "hash-list feed fetches every fetch wait even when nothing arrives); 0 before the "
            "first.",
            registry=r,
        )
        self.broker_last_produce = Gauge(
            f"{p}_broker_last_produce_timestamp_seconds",
            "Unix time the broker last acknowledged an output record of this worker; 0 before "
            "the first (advances only while outputs are written).",
            registry=r,
        )
        self._last_broker_contact = 0.0
        self.broker_last_contact = Gauge(
            f"{p}_broker_last_contact_timestamp_seconds",
            "Unix time of the newest successful request of this worker to the broker: a fetch "
            "response, a produce acknowledgement or a metadata answer of the topic check; 0 "
            "before the first. What ScreeningBrokerUnreachable reads.",
            registry=r,
        )
        self.broker_reachable = Gauge(
            f"{p}_broker_reachable",
            "1 while some request to the broker succeeded within "
            "PIPELINE_BROKER_UNREACHABLE_AFTER_SECONDS, computed at each scrape.",
            registry=r,
        )

    def _define_lists(self, r: CollectorRegistry, p: str) -> None:
        """Hash lists loaded, updates applied, and how fresh they are."""
        self.index_entries = Gauge(
            f"{p}_index_entries",
            "Hash-list entries loaded, by list and algorithm.",
            ["list", "algorithm"],
            registry=r,
        )
        self.list_updates = Counter(
            f"{p}_hashlist_updates_total",
            "Hash-list records by what they were about (entry, list, quarantine, unknown) and "
            "outcome: applied, held (an entry of a list without a config: stored, not matched) "
            "or rejected (invalid; logged with its offset and skipped).",
            ["operation", "outcome"],
            registry=r,
        )
        self.index_build_seconds = Histogram(
            f"{p}_index_build_seconds",
            "Time to build the hash-list indexes after a load from empty (the first one, or a "
            "re-read after a topic reset), on the hash-list feed's thread, off the event loop.",
            buckets=BUILD_BUCKETS,
            registry=r,
        )
        self.low_information_entries = Gauge(
            f"{p}_hashlist_low_information_entries",
            "Hash-list entries loaded whose perceptual hash is the hash of a low-information "
            "picture (blank, gradient, vignette, stripes): flagged for the list's owner.",
            ["list", "algorithm"],
            registry=r,
        )
        self.held_entries = Gauge(
            f"{p}_hashlist_held_entries",
            "Entries of the list held, not matched: the hashlists topic has no config for the "
            "list (yet, or no longer). They match once its config arrives.",
            ["list"],
            registry=r,
        )
        self.last_list_update = Gauge(
            f"{p}_hashlist_last_update_timestamp_seconds",
            "Kafka timestamp of the newest hash-list record applied (list freshness).",
            registry=r,
        )

    def _define_quarantine(self, r: CollectorRegistry, p: str) -> None:
        """Entries quarantined for flooding, and the matches that asked for less because of it."""
        self.quarantined_entries = Gauge(
            f"{p}_quarantined_entries",
            "Entries of the list quarantined on this worker (matched too large a share of its "
            "uploads; their matches ask for review until lifted).",
            ["list"],
            registry=r,
        )
        self.entry_quarantined = Gauge(
            f"{p}_entry_quarantined_timestamp_seconds",
            "Unix time this worker quarantined the entry; a series exists only while the entry "
            f"is quarantined, at most {MAX_NAMED_QUARANTINES} per worker.",
            ["list", "entry_id"],
            registry=r,
        )
        self.quarantine_demotions = Counter(
            f"{p}_quarantine_demoted_matches_total",
            "Deny matches that asked for review instead of block because their entry is "
            "quarantined.",
            ["list"],
            registry=r,
        )

    def _define_outputs_and_health(self, r: CollectorRegistry, p: str) -> None:
        """Alert delivery, output writes, supervised services and readiness."""
        self.alert_deliveries = Counter(
            f"{p}_alert_deliveries_total",
            "Alert delivery attempts, by sink and outcome.",
            ["sink", "outcome"],
            registry=r,
        )
        self.alerts_waiting = Gauge(
            f"{p}_alerts_waiting",
            "Alerts in Kafka not yet delivered to the sink (each sink has its own position).",
            ["sink"],
            registry=r,
        )
        self.alerts_active = Gauge(
            f"{p}_alerts_active",
            "Match alerts this worker re-asserts to a sink that forgets them until they end.",
            ["sink"],
            registry=r,
        )
        self.alert_reasserts = Counter(
            f"{p}_alert_reasserts_total",
            "Active alerts sent again to a sink that forgets them, by outcome.",
            ["sink", "outcome"],
            registry=r,
        )
        self.active_alerts_dropped = Counter(
            f"{p}_alerts_dropped_from_active_total",
            "Active alerts no longer re-asserted because more than the cap were active.",
            ["sink"],
            registry=r,
        )
        self.output_failures = Counter(
            f"{p}_output_failures_total",
            "Output records not accepted by the broker, by output and handling: retried "
            "(transient; the upload waits), replaced (refused for good; a slim copy and a dead "
            "letter were written instead) or dropped (the replacement was refused too).",
            ["output", "handling"],
            registry=r,
        )
        self.list_resets = Counter(
            f"{p}_hashlist_resets_total",
            "Times the hashlists topic was found reset (deleted and created again) and re-read "
            "from the start into a fresh index.",
            registry=r,
        )
        self.uploads_resets = Counter(
            f"{p}_uploads_resets_total",
            "Times the uploads topic was found deleted or re-created and this worker stopped "
            "acknowledging what it had read of the old topic and re-read the new one from the "
            "start.",
            registry=r,
        )
        self.topics_recreated = Counter(
            f"{p}_topics_recreated_total",
            "Topics of this worker found missing or re-created (a new topic id) on the broker, "
            "by kind; the worker re-creates them and sends unconfirmed outputs again.",
            ["topic"],
            registry=r,
        )
        self.topic_missing = Gauge(
            f"{p}_topic_missing",
            "1 while a topic of this worker, by kind, is missing on the broker (not yet or not "
            "at all re-created: creating it failed), else 0.",
            ["topic"],
            registry=r,
        )
        self.service_restarts = Counter(
            f"{p}_service_restarts_total",
            "Restarts of a background service after it failed (hashlist_feed, "
            "alert_delivery_<sink>).",
            ["service"],
            registry=r,
        )
        self.ready = Gauge(
            f"{p}_ready",
            "1 when /readyz would answer 200: hash lists caught up, screening, live.",
            registry=r,
        )

    def _create_known_series(self) -> None:
        for outcome in OUTCOMES:
            self.events_processed.labels(outcome)
        for action in Action:
            self.verdicts.labels(action.value)
        for stage in TIMED_STAGES:
            self.stage_seconds.labels(stage)
        for reason in GuardReason:
            self.guard_rejections.labels(reason.value)
        for orientation in Orientation:
            for kind in RegionKind:
                self.variant_matches.labels(orientation.value, kind.value)
        for sink in SINKS:
            for outcome in DELIVERY_OUTCOMES:
                self.alert_deliveries.labels(sink, outcome)
            self.alerts_waiting.labels(sink)
        for sink in REASSERTING_SINKS:
            self.alerts_active.labels(sink)
            self.active_alerts_dropped.labels(sink)
            for reassert in ReassertOutcome:
                self.alert_reasserts.labels(sink, reassert.value)
        for operation in LIST_OPERATIONS:
            for outcome in LIST_UPDATE_OUTCOMES:
                self.list_updates.labels(operation, outcome)
        for output in OUTPUTS:
            for handling in OUTPUT_FAILURE_HANDLING:
                self.output_failures.labels(output, handling)
        for service in SERVICES:
            self.service_restarts.labels(service)
        for topic_kind in TOPIC_KINDS:
            self.topics_recreated.labels(topic_kind)
            self.topic_missing.labels(topic_kind)

    # -- call sites are one-liners ----------------------------------------------------------------

    def register_list(self, name: str, algorithms: Iterable[Algorithm] = Algorithm) -> None:
        """Create a list's series at zero when the list becomes known."""
        for category in Category:
            for algorithm in algorithms:
                self.matches.labels(name, category.value, algorithm.value)
        for algorithm in algorithms:
            self.index_entries.labels(name, algorithm.value)
            if algorithm.is_perceptual:
                self.low_information_entries.labels(name, algorithm.value)
        self.held_entries.labels(name)
        self.quarantined_entries.labels(name)
        self.quarantine_demotions.labels(name)
        self._quarantine_lists.add(name)

    def observe_stage(self, stage: Stage | str, seconds: float) -> None:
        self.stage_seconds.labels(str(stage)).observe(seconds)

    def verdict(self, action: Action) -> None:
        self.verdicts.labels(action.value).inc()
        self.last_event.set(time.time())

    def video_screened(self, duration_seconds: float) -> None:
        self.videos.inc()
        self.video_seconds.inc(max(0.0, duration_seconds))

    def match(self, list_name: str, category: str, algorithm: str) -> None:
        self.matches.labels(list_name, category, algorithm).inc()

    def variant_match(self, orientation: Orientation, region: RegionKind) -> None:
        self.variant_matches.labels(orientation.value, region.value).inc()

    def dead_letter(self, stage: Stage | str, reason: str) -> None:
        self.dead_letters.labels(
            str(stage), reason if reason in DEAD_LETTER_REASONS else "other"
        ).inc()

    def guard_rejected(self, reason: str) -> None:
        known = reason if reason in {r.value for r in GuardReason} else "undecodable"
        self.guard_rejections.labels(known).inc()

    def processed(self, outcome: str) -> None:
        self.events_processed.labels(outcome).inc()

    def service_restarted(self, service: str) -> None:
        self.service_restarts.labels(service).inc()

    def output_failure(self, output: str, handling: str) -> None:
        self.output_failures.labels(output, handling).inc()

    def topic_recreated(self, kind: str) -> None:
        """A topic of kind ``kind`` (one of TOPIC_KINDS) was found missing or re-created."""
        self.topics_recreated.labels(kind).inc()

    def set_topic_missing(self, kind: str, missing: bool) -> None:
        """Whether the topic of kind ``kind`` (one of TOPIC_KINDS) is missing on the broker."""
        self.topic_missing.labels(kind).set(1 if missing else 0)

    def alert_delivery(self, sink: str, outcome: str) -> None:
        self.alert_deliveries.labels(sink, outcome).inc()

    def set_alerts_waiting(self, sink: str, count: int) -> None:
        self.alerts_waiting.labels(sink).set(count)

    def alerts_reasserted(self, sink: str, outcome: str, count: int) -> None:
        self.alert_reasserts.labels(sink, outcome).inc(count)

    def set_alerts_active(self, sink: str, count: int) -> None:
        self.alerts_active.labels(sink).set(count)

    def alerts_dropped_from_active(self, sink: str, count: int) -> None:
        self.active_alerts_dropped.labels(sink).inc(count)

    def list_update(self, operation: str, outcome: str, count: int = 1) -> None:
        """Count ``count`` hash-list records; an operation or outcome outside the vocabularies
        counts as ``unknown`` or ``rejected``."""
        op = operation if operation in LIST_OPERATIONS else "unknown"
        known = outcome if outcome in LIST_UPDATE_OUTCOMES else "rejected"
        self.list_updates.labels(op, known).inc(count)

    def index_built(self, seconds: float) -> None:
        """The hash-list indexes were built from a load (off the event loop) in ``seconds``."""
        self.index_build_seconds.observe(seconds)

    def list_reset(self) -> None:
        """The hashlists topic was reset under the worker and is being re-read."""
        self.list_resets.inc()

    def uploads_reset(self) -> None:
        """The uploads topic was re-created under the worker and is read again from its start."""
        self.uploads_resets.inc()

    def list_updated_at(self, timestamp_seconds: float) -> None:
        """The newest applied hash-list record was written to Kafka at this Unix time."""
        if timestamp_seconds > self._newest_list_record:
            self._newest_list_record = timestamp_seconds
            self.last_list_update.set(timestamp_seconds)

    def report_readiness(self, is_ready: Callable[[], bool]) -> None:
        """Make ``screening_ready`` read ``is_ready()`` at every scrape, so the gauge cannot
        disagree with /readyz (a value set once at start-up would never fall back to 0)."""
        self.ready.set_function(lambda: 1.0 if is_ready() else 0.0)

    def broker_fetched(self, unix_seconds: float) -> None:
        self.broker_last_fetch.set(unix_seconds)
        self._broker_contacted(unix_seconds)

    def broker_produced(self, unix_seconds: float) -> None:
        self.broker_last_produce.set(unix_seconds)
        self._broker_contacted(unix_seconds)

    def broker_answered(self, unix_seconds: float) -> None:
        """The broker answered another request (metadata) at ``unix_seconds``."""
        self._broker_contacted(unix_seconds)

    def _broker_contacted(self, unix_seconds: float) -> None:
        if unix_seconds > self._last_broker_contact:
            self._last_broker_contact = unix_seconds
            self.broker_last_contact.set(unix_seconds)

    def report_broker_reachable(self, is_reachable: Callable[[], bool]) -> None:
        """Make ``screening_broker_reachable`` read ``is_reachable()`` at every scrape."""
        self.broker_reachable.set_function(lambda: 1.0 if is_reachable() else 0.0)

    def set_consumer_lag(
        self,
        lags: Mapping[tuple[str, int], int],
        owned: Iterable[tuple[str, int]] | None = None,
    ) -> None:
        """Publish lag per (topic, partition), and remove the series of partitions this worker
        no longer owns: after a rebalance their last value would otherwise stay and show a
        phantom backlog in ``sum()`` (and page). ``owned`` (default: the keys of ``lags``)
        keeps the last value of an owned partition whose figure is missing this time, so a
        slow client does not make the series flap."""
        kept = set(lags) | set(owned or ())
        for topic, partition in self._lag_series - kept:
            self.consumer_lag.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
        self._lag_series = (self._lag_series & kept) | set(lags)

    def set_low_information_entries(
        self, counts: Mapping[tuple[str, Algorithm], int], lists: Iterable[str]
    ) -> None:
        """Publish flagged entry counts per (list, perceptual algorithm); zero, not removed,
        when a list has none (left)."""
        for name in lists:
            for algorithm in Algorithm:
                if algorithm.is_perceptual:
                    self.low_information_entries.labels(name, algorithm.value).set(
                        counts.get((name, algorithm), 0)
                    )

    def set_held_entries(self, counts: Mapping[str, int], lists: Iterable[str]) -> None:
        """Publish held entries per list; zero, not removed, once a list's config arrives."""
        for name in lists:
            self.held_entries.labels(name).set(counts.get(name, 0))

    def set_index_entries(
        self,
        counts: dict[tuple[str, Algorithm], int],
        lists: Iterable[str],
        videos: Mapping[str, int] | None = None,
    ) -> None:
        """Publish entry counts, and vPDQ (whole-video) entries per list under algorithm
        ``vpdq``; lists that dropped to zero are set to zero, not removed."""
        for name in lists:
            for algorithm in Algorithm:
                self.index_entries.labels(name, algorithm.value).set(
                    counts.get((name, algorithm), 0)
                )
            self.index_entries.labels(name, VPDQ_ALGORITHM).set((videos or {}).get(name, 0))

    def quarantine_demoted(self, list_name: str) -> None:
        self.quarantine_demotions.labels(list_name).inc()

    def set_quarantined(self, since: Mapping[tuple[str, str], float]) -> None:
        """Publish the entries quarantined now, each with the Unix time it was quarantined:
        the count per list (every known list, zero included), and one series per entry for
        the first :data:`MAX_NAMED_QUARANTINES` by time (series of lifted entries removed)."""
        counts = collections.Counter(name for name, _ in since)
        self._quarantine_lists |= set(counts)
        for name in self._quarantine_lists:
            self.quarantined_entries.labels(name).set(counts.get(name, 0))
        named = set(sorted(since, key=lambda key: (since[key], key))[:MAX_NAMED_QUARANTINES])
        for list_name, entry_id in self._named_quarantines - named:
            self.entry_quarantined.remove(list_name, entry_id)
        for key in named:
            self.entry_quarantined.labels(*key).set(since[key])
        self._named_quarantines = named
