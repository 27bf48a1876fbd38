"""What processing changed: the hand-off to segments and the outbox."""

from dataclasses import dataclass, field


@dataclass
class Changes:
    """What a batch changed, for segments and the outbox."""

    users: set[int] = field(default_factory=set)
    accounts: set[int] = field(default_factory=set)
    events: list[int] = field(default_factory=list)
    merged_away: set[int] = field(default_factory=set)
    processed: int = 0
    failed: int = 0
    skipped: int = 0

    def add(self, other: "Changes") -> None:
        self.users |= other.users
        self.accounts |= other.accounts
        self.events += other.events
        self.merged_away |= other.merged_away
        self.processed += other.processed
        self.failed += other.failed
        self.skipped += other.skipped
