"""What processing changed: the hand-off to segments, the outbox and the other stages' tables."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Merge:
    """A stored profile folded into another (`merged` is gone): the other stages move what they keep of it."""

    survivor: int
    merged: int


@dataclass
class Erasure:
    """An erasure: the profiles removed, the identifiers (kind, value) suppressed, what the stages removed of
    them by table (for the log, the audit and the API) and the accounts whose usage was recounted."""

    users: list[int] = field(default_factory=list)
    claims: set[tuple[str, str]] = field(default_factory=set)
    events: set[int] = field(default_factory=set)
    accounts: set[int] = field(default_factory=set)  # whose usage was recounted: segments may change
    counts: dict[str, int] = field(default_factory=dict)
    via: str = ""  # what asked for it (the log's `via`): "message" or "api"

    def count(self, name: str, number: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + max(number, 0)

    def values(self, *kinds: str) -> list[str]:
        """The suppressed identifiers of these kinds, sorted."""
        return sorted({value for kind, value in self.claims if kind in kinds})


@dataclass
class Changes:
    """What a batch changed, for segments, the outbox and, for merges and erasures, the stages that keep
    something of a profile (service/ composes them, in order, in the batch's transaction)."""

    users: set[int] = field(default_factory=set)
    accounts: set[int] = field(default_factory=set)
    events: list[int] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    erasures: list[Erasure] = field(default_factory=list)
    processed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def merged_away(self) -> set[int]:
        return {merge.merged for merge in self.merges}

    def add(self, other: "Changes") -> None:
        self.users |= other.users
        self.accounts |= other.accounts
        self.events += other.events
        self.merges += other.merges
        self.erasures += other.erasures
        self.processed += other.processed
        self.failed += other.failed
        self.skipped += other.skipped
