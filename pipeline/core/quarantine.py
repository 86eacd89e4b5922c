"""Flood quarantine: a list entry that suddenly matches a large share of uploads is distrusted.

A real entry of known abuse imagery matches a tiny fraction of a platform's uploads. An entry
that matches a large share of them is almost always a bad entry: the hash of a blank image, a
common logo, a UI frame. Until someone fixes the list, every upload that looks like it would be
blocked. Owns the rule that catches such an entry and what that does to its matches:

- **The window.** The last ``window_uploads`` uploads screened (each upload counts once, with
  the deny-list entries it matched; allow-list matches are not counted: they only ever suppress).
  An entry is *quarantined* when it matches an upload and, with at least ``min_uploads``
  uploads in the window, the share of them that matched it exceeds ``share``. The minimum keeps
  a quiet or freshly started worker from quarantining an entry on 2 matches of 3 uploads; the
  share makes the rule independent of traffic, so it holds per worker (each worker sees its own
  share of the uploads).
- **Different files, not repeats.** An entry's matches count the *different* files (by the
  upload's content digest) in the window that matched it: one file uploaded again and again
  counts once. A bad entry (a blank frame, a logo) matches many different pictures; a genuine
  entry whose one picture is being re-posted by a spam campaign or a raid matches the same file
  many times. Counting repeats would let anyone quarantine a genuine entry, demoting its
  blocks to review, by uploading the known file a few hundred times; and a redelivered upload
  (at-least-once) would count twice.
- **Sticky.** A quarantined entry stays quarantined when its share falls again, until an
  operator lifts it or the entry is retracted: a bad entry that pauses is still bad.
- **Lifting exempts.** A lifted entry is exempt from quarantine until an operator re-arms it.
  Lifting says "this entry is genuine" (say a known image really is being spread by a spam
  campaign): it must keep blocking through the whole campaign, not be quarantined again after
  the next few matches. A bad entry is fixed by retracting it, not by lifting it.
- **Demotion, never silence.** A quarantined entry's deny matches ask for at most ``review``
  (:attr:`pipeline.core.decision.DecisionPolicy.quarantined_action`): the upload is held for a
  person, never allowed, and the verdict says the entry is quarantined.

Memory is bounded by the window: at most ``window_uploads`` uploads of at most
:data:`MAX_ENTRIES_PER_UPLOAD` entries each, a count per (entry, file) pair and per entry only
while they are in the window. The quarantined and exempt entries are kept apart from the window
(an operator's lifts, and entries that flooded, which are few); they grow only with those.

Must not do I/O, read a clock or log: the worker feeds it uploads and lifts, and reports what it
returns.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pipeline.core.hashlist import ListKind
from pipeline.core.matching import Match

#: A list entry: (list name, entry id).
EntryKey = tuple[str, str]

#: Most entries one upload counts for. An upload near more entries than this (an image close to
#: a thousand bad entries at once) counts for its nearest ones, so one upload cannot hold more
#: than this much of the window's memory. The same bound as the matches a verdict lists.
MAX_ENTRIES_PER_UPLOAD = 100


@dataclass(frozen=True, slots=True)
class FloodRule:
    """When an entry is quarantined: over ``share`` of at least ``min_uploads`` of the last
    ``window_uploads`` uploads matched it."""

    window_uploads: int = 1000
    min_uploads: int = 500
    share: float = 0.02

    def __post_init__(self) -> None:
        if self.window_uploads < 1:
            raise ValueError(f"window_uploads must be at least 1, got {self.window_uploads}")
        if not 1 <= self.min_uploads <= self.window_uploads:
            raise ValueError(
                f"min_uploads must be between 1 and window_uploads ({self.window_uploads}), "
                f"got {self.min_uploads}"
            )
        if not 0 < self.share < 1:
            raise ValueError(f"share must be between 0 and 1 (exclusive), got {self.share}")

    def floods(self, matched: int, uploads: int) -> bool:
        """True when ``matched`` of ``uploads`` (the window now) is a flood."""
        return uploads >= self.min_uploads and matched > self.share * uploads


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Why an entry was quarantined: ``matched`` different files among the ``uploads`` in the
    window matched it."""

    key: EntryKey
    matched: int
    uploads: int

    @property
    def share(self) -> float:
        """The share of the window's uploads that matched the entry."""
        return self.matched / self.uploads


def counted_entries(matches: Iterable[Match]) -> tuple[EntryKey, ...]:
    """The deny-list entries an upload's matches name, once each, in the matches' order
    (nearest first), at most :data:`MAX_ENTRIES_PER_UPLOAD`. Allow-list matches are left out."""
    keys = dict.fromkeys((m.list_name, m.entry_id) for m in matches if m.list_kind is ListKind.DENY)
    return tuple(keys)[:MAX_ENTRIES_PER_UPLOAD]


class FloodQuarantine:
    """The window, the quarantined entries and the exempt ones; see the module docstring."""

    def __init__(self, rule: FloodRule | None = None) -> None:
        self.rule = rule or FloodRule()
        #: Each upload in the window: its content (digest) and the entries it counted for.
        self._window: deque[tuple[Hashable, tuple[EntryKey, ...]]] = deque()
        #: Uploads in the window per (entry, content): repeats of one file.
        self._copies: Counter[tuple[EntryKey, Hashable]] = Counter()
        #: Different contents in the window per entry: what the rule judges.
        self._counts: Counter[EntryKey] = Counter()
        self._quarantined: dict[EntryKey, Quarantine] = {}
        self._exempt: set[EntryKey] = set()

    # -- uploads ------------------------------------------------------------------------------

    def observe(
        self, matches: Iterable[Match], content: Hashable | None = None
    ) -> tuple[Quarantine, ...]:
        """Count one screened upload (with every match it had, or none) whose bytes have the
        digest ``content`` (None: unknown, the upload counts as a file of its own); returns the
        entries this upload made quarantined, so the caller can say so once."""
        keys = counted_entries(matches)
        if content is None:
            content = object()  # equal to nothing else: a file of its own
        if len(self._window) == self.rule.window_uploads:
            self._forget(*self._window.popleft())
        self._window.append((content, keys))
        for key in keys:
            self._copies[key, content] += 1
            if self._copies[key, content] == 1:  # a file this entry had not matched yet
                self._counts[key] += 1
        # Judged when they match: an entry that floods matches again soon, and only this
        # upload's entries' counts grew (the number of uploads in the window never shrinks).
        uploads = len(self._window)
        started = []
        for key in keys:
            if key in self._quarantined or key in self._exempt:
                continue
            if self.rule.floods(self._counts[key], uploads):
                quarantine = Quarantine(key, self._counts[key], uploads)
                self._quarantined[key] = quarantine
                started.append(quarantine)
        return tuple(started)

    def _forget(self, content: Hashable, keys: tuple[EntryKey, ...]) -> None:
        for key in keys:
            self._copies[key, content] -= 1
            if self._copies[key, content]:
                continue  # another copy of the file is still in the window
            del self._copies[key, content]
            self._counts[key] -= 1
            if not self._counts[key]:
                del self._counts[key]

    # -- operators ----------------------------------------------------------------------------

    def lift(self, key: EntryKey) -> Quarantine | None:
        """Lift ``key``'s quarantine, if any, and exempt it until :meth:`rearm`. Returns the
        quarantine lifted (None: it was not quarantined here, but it is exempt from now on)."""
        self._exempt.add(key)
        return self._quarantined.pop(key, None)

    def release(self, key: EntryKey) -> Quarantine | None:
        """The entry is gone (retracted from its list): end its quarantine, if any, without
        exempting it; re-published, it is watched like any entry."""
        return self._quarantined.pop(key, None)

    def rearm(self, key: EntryKey) -> None:
        """End ``key``'s exemption: it is watched again, its matches in the window counting."""
        self._exempt.discard(key)

    # -- state --------------------------------------------------------------------------------

    def is_quarantined(self, key: EntryKey) -> bool:
        return key in self._quarantined

    @property
    def quarantined(self) -> Mapping[EntryKey, Quarantine]:
        """Every entry quarantined now, with why (read-only view)."""
        return MappingProxyType(self._quarantined)

    @property
    def exempt(self) -> frozenset[EntryKey]:
        """Entries lifted and not re-armed."""
        return frozenset(self._exempt)

    @property
    def uploads(self) -> int:
        """Uploads in the window now."""
        return len(self._window)

    def matched(self, key: EntryKey) -> int:
        """Different files among the window's uploads that matched ``key``."""
        return self._counts[key]

    @property
    def entries_counted(self) -> int:
        """Distinct entries with a count in the window (bounded by the window)."""
        return len(self._counts)
