"""Time windows and sync scopes: the two dimensions a sync is partitioned by.

A *window* is a half-open UTC interval [start, end). A *scope* is one environment and one
channel, written ``environment.channel`` (for example ``live.voice``) in partition keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from core.api_contract import ENVIRONMENTS
from core.errors import PolyAISyncError


class ScopeError(PolyAISyncError, ValueError):
    """A scope key that is not ``environment.channel`` with a known environment."""


@dataclass(frozen=True, order=True)
class Window:
    """A half-open interval of time [start, end), both timezone-aware UTC datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if value.tzinfo is None:
                raise ValueError(f"window {name} {value!r} has no time zone; use UTC")
        if self.start >= self.end:
            raise ValueError(f"window start {self.start} is not before its end {self.end}")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def daily_window(day: date) -> Window:
    """The UTC calendar day ``day`` as a window."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


GRANULARITIES = ("daily", "hourly")
_KEY_FORMATS = {"daily": "%Y-%m-%d", "hourly": "%Y-%m-%d-%H:%M"}


def windows_of_days(days: Iterable[date], granularity: str) -> list[Window]:
    """The windows that cover ``days``: one per day, or 24 per day when hourly."""
    if granularity == "daily":
        return [daily_window(day) for day in days]
    if granularity == "hourly":
        return [
            Window(w.start + timedelta(hours=h), w.start + timedelta(hours=h + 1))
            for w in map(daily_window, days)
            for h in range(24)
        ]
    raise ValueError(f"granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")


def window_key(window: Window) -> str:
    """The time partition key of a window: ``2026-11-20`` daily, ``2026-11-20-05:00`` hourly."""
    hours = (window.end - window.start) / timedelta(hours=1)
    return window.start.strftime(_KEY_FORMATS["hourly" if hours == 1 else "daily"])


def window_from_key(key: str) -> Window:
    """The window a time partition key names (the inverse of :func:`window_key`)."""
    if len(key) == len("2026-11-20"):
        return daily_window(date.fromisoformat(key))
    start = datetime.strptime(key, _KEY_FORMATS["hourly"]).replace(tzinfo=UTC)
    return Window(start, start + timedelta(hours=1))


def days_between(first: date, last: date) -> Iterator[date]:
    """Every date from ``first`` to ``last``, both inclusive."""
    if first > last:
        raise ValueError(f"start date {first} is after end date {last}")
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


@dataclass(frozen=True, order=True)
class Scope:
    """One environment and one channel: the unit a single API query covers."""

    environment: str
    channel: str

    @property
    def key(self) -> str:
        return f"{self.environment}.{self.channel}"

    @classmethod
    def parse(cls, key: str) -> Scope:
        environment, sep, channel = key.partition(".")
        if not sep or not channel:
            raise ScopeError(f"scope {key!r} is not of the form environment.channel")
        if environment not in ENVIRONMENTS:
            raise ScopeError(
                f"scope {key!r} names environment {environment!r}; expected one of "
                f"{', '.join(ENVIRONMENTS)}"
            )
        return cls(environment, channel)


def scopes_for(environments: Iterable[str], channels: Iterable[str]) -> list[Scope]:
    """Every environment x channel combination, in a stable order."""
    channels = list(channels)
    return [Scope(env, channel) for env in environments for channel in channels]


def nightly_windows(
    today: date,
    scopes: Iterable[Scope],
    lookback_days: int,
    held_in_progress: Iterable[tuple[Scope, date]],
    first_day: date,
) -> list[tuple[date, Scope]]:
    """The (day, scope) windows a nightly run on ``today`` syncs, oldest first.

    Yesterday for every scope; again the ``lookback_days`` before it, so that late arrivals
    land; and any earlier window that still held in-progress conversations when it was last
    synced. Nothing before ``first_day`` and nothing from today (it is not over).
    """
    scopes = list(scopes)
    wanted = {
        (today - timedelta(days=back), scope)
        for back in range(1, lookback_days + 2)
        for scope in scopes
    }
    wanted |= set((day, scope) for scope, day in held_in_progress if scope in scopes)
    return sorted((d, s) for d, s in wanted if first_day <= d < today)


def expected_newest_day(now: datetime, schedule_hour: int, grace_hours: int = 6) -> date:
    """The newest day every scope should have synced by ``now``: yesterday once the nightly
    run has had ``grace_hours`` after its hour to finish, the day before until then."""
    today = now.astimezone(UTC).date()
    ready = datetime.combine(today, time(hour=schedule_hour), tzinfo=UTC) + timedelta(
        hours=grace_hours
    )
    return today - timedelta(days=1 if now >= ready else 2)
