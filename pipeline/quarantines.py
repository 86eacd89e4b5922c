"""This worker's flood quarantine: the core rule fed by screening and by operators, told to the
log and the metrics.

Owns: counting each screened upload's matches (:class:`~pipeline.core.quarantine.FloodQuarantine`
with the settings' rule), one warning per entry quarantined, naming it and how to lift it, the
quarantine metrics, and applying the lifts, re-arms and retractions the hash-list feed reads
from the ``hashlists`` topic. The state is this worker's own and in memory: a share is a ratio,
so each worker judges its share of the uploads alike, and workers never write to the topic;
a restarted worker counts afresh (lifts are on the topic, so exemptions survive).
Must not: do Kafka or network I/O; screening and the feed call it on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Hashable, Mapping, Sequence
from typing import Protocol

from pipeline.core.decision import Decision
from pipeline.core.matching import Match
from pipeline.core.quarantine import EntryKey, FloodQuarantine, FloodRule, Quarantine
from pipeline.core.types import Action
from pipeline.models import QuarantineLiftRecord

log = logging.getLogger(__name__)


class QuarantineMetrics(Protocol):
    def set_quarantined(self, since: Mapping[tuple[str, str], float]) -> None: ...

    def quarantine_demoted(self, list_name: str) -> None: ...


class WorkerQuarantine:
    """The flood quarantine of one worker (single event-loop thread, no locks)."""

    def __init__(
        self,
        rule: FloodRule,
        metrics: QuarantineMetrics,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = FloodQuarantine(rule)
        self.enabled = enabled
        self._metrics = metrics
        self._clock = clock
        #: Unix time each quarantined entry was quarantined (the metric's value).
        self._since: dict[EntryKey, float] = {}

    def screened(
        self, matches: Sequence[Match], content: Hashable | None = None
    ) -> Container[EntryKey]:
        """Count one screened upload's matches (``content``: its digest, so repeats of one
        file count once); the entries quarantined now, to decide with."""
        if not self.enabled:
            return frozenset()
        started = self.state.observe(matches, content)
        for quarantine in started:
            self._since[quarantine.key] = self._clock()
            self._log_quarantined(quarantine)
        if started:
            self._publish()
        return self.state.quarantined

    def decided(self, decision: Decision) -> None:
        """Count the matches that asked for review instead of block because of a quarantine."""
        for match in decision.quarantined:
            if match.list_action is Action.BLOCK and match in decision.matches:
                self._metrics.quarantine_demoted(match.list_name)

    def _log_quarantined(self, quarantine: Quarantine) -> None:
        list_name, entry_id = quarantine.key
        log.warning(
            "entry quarantined: list=%s entry=%s matched %d different files in the last %d "
            "uploads (%.1f%% > %.1f%%); its matches ask for review until lifted: pipeline "
            "quarantine lift --list %s --entry %s (or retract the entry if it is bad)",
            list_name,
            entry_id,
            quarantine.matched,
            quarantine.uploads,
            100 * quarantine.share,
            100 * self.state.rule.share,
            list_name,
            entry_id,
        )

    def apply(self, key: EntryKey, lift: QuarantineLiftRecord | None) -> None:
        """An operator's record from the topic: a lift (exempt until re-armed) or, None, a
        re-arm."""
        list_name, entry_id = key
        if lift is None:
            self.state.rearm(key)
            log.info("quarantine re-armed: list=%s entry=%s", list_name, entry_id)
            return
        lifted = self.state.lift(key)
        if lifted is not None:
            log.warning(
                "quarantine lifted: list=%s entry=%s (lifted at %s%s); it is exempt until re-armed",
                list_name,
                entry_id,
                lift.lifted_at.isoformat(),
                f": {lift.reason}" if lift.reason else "",
            )
            self._release(key)

    def retracted(self, key: EntryKey) -> None:
        """The entry was retracted from its list: its quarantine, if any, ends."""
        if self.state.release(key) is not None:
            log.info("quarantine ended: list=%s entry=%s was retracted", *key)
            self._release(key)

    def _release(self, key: EntryKey) -> None:
        self._since.pop(key, None)
        self._publish()

    def _publish(self) -> None:
        self._metrics.set_quarantined(dict(self._since))
