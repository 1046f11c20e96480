"""Progress of a multi-window sync: one plain line per window, readable in a terminal and in a
log file alike (no cursor tricks, so CI logs and `| tee` keep every line)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class SyncProgress:
    """Windows done of total, conversations so far, the rate, and the time left."""

    total: int
    write: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    failed: int = 0
    conversations: int = 0
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def window_done(
        self, label: str, conversations: int, turns: int, seconds: float, api: str = ""
    ) -> None:
        """A window landed; ``api``: what the requests were doing then (see :func:`api_pace`)."""
        self.done += 1
        self.conversations += conversations
        self.write(
            f"[{self.done}/{self.total}] {label}: {conversations} conversations, {turns} turns "
            f"({seconds:.1f}s) | {self._totals()}" + (f" | {api}" if api else "")
        )

    def window_failed(self, label: str, error: str) -> None:
        self.done += 1
        self.failed += 1
        self.write(f"[{self.done}/{self.total}] {label}: FAILED: {error} | {self._totals()}")

    def _totals(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.conversations / elapsed
        left = elapsed / self.done * (self.total - self.done)
        return (
            f"{self.conversations} conversations, {rate:,.0f}/s, "
            f"{_duration(elapsed)} elapsed, ~{_duration(left)} left"
        )


def _duration(elapsed: float) -> str:
    seconds = round(elapsed)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def api_pace(in_flight: int | None, limit: int | None, per_second: float | None) -> str:
    """``API: 6 in flight (limit 8), 7.4 requests/s``, or nothing when not recorded."""
    if in_flight is None or limit is None or per_second is None:
        return ""
    return f"API: {in_flight} in flight (limit {limit}), {per_second:.1f} requests/s"
