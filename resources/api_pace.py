"""How many requests a sync has in flight at once, across all its processes, and how that
number adapts to the API.

Against a real API a backfill's time is set by the requests in flight, not by the cores: a page
may take a second to serve. A sync therefore fetches several windows at once (one page in
flight per window, :mod:`sync.feed`), up to ``POLYAI_MAX_IN_FLIGHT`` requests together. The
limit adapts as TCP's congestion window does (additive increase, multiplicative decrease): a
429 halves it for every process of the sync, and it climbs back by one for every ``limit``
answers that are not 429s (a round of healthy answers), up to the maximum. A
burst of 429s to requests sent at the same limit cuts it once. A 429 with ``Retry-After`` also
holds every request that has not been sent yet until that moment (capped as the client caps
it), since the API said so for the key, not for one request.

One :class:`InFlightLimit` serves every client of one API key and base URL in a process
(:func:`pace_for`); its state is shared memory, so the fetch processes a sync forks after
creating it share it. ``polyai-sync sync`` executes its runs in its own process, so the limit
spans its whole backfill; a run launched by the daemon or the UI has its own process and its
own limit.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from dataclasses import dataclass

from core.config import MAX_IN_FLIGHT

__all__ = ["MAX_IN_FLIGHT", "InFlightLimit", "PaceReport", "pace_for"]

# Slots of the shared state.
_LIMIT, _IN_FLIGHT, _PEAK, _LOWEST, _CUTS, _REQUESTS, _RESUME_AT = range(7)
_SINCE, _SINCE_REQUESTS, _SINCE_CUTS, _CREDIT = range(7, 11)


@dataclass(frozen=True)
class PaceReport:
    """What the limit did since :meth:`InFlightLimit.start_report` (a sync step's start)."""

    maximum: int
    limit: int
    """The limit now (whole requests)."""
    in_flight: int
    peak: int
    """The most requests in flight at once."""
    lowest: int
    """The lowest the limit fell to."""
    cuts: int
    """How many times a 429 cut the limit."""
    requests: int
    seconds: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


class InFlightLimit:
    """At most ``limit`` requests in flight at once (1..``maximum``), across processes forked
    after it was made."""

    def __init__(self, maximum: int) -> None:
        if maximum < 1:
            raise ValueError(f"the in-flight maximum must be at least 1, not {maximum}")
        context = multiprocessing.get_context("fork")
        self.maximum = maximum
        self._changed = context.Condition(context.Lock())
        self._state = context.RawArray("d", 11)
        self._state[_LIMIT] = self._state[_LOWEST] = maximum
        self._state[_SINCE] = time.monotonic()

    def acquire(self) -> int:
        """Wait for a free slot (and for any ``Retry-After`` the API gave); take it. Returns
        the ticket :meth:`release` needs: the cuts made before this request was sent."""
        state = self._state
        with self._changed:
            while True:
                wait = state[_RESUME_AT] - time.monotonic()
                if wait <= 0 and state[_IN_FLIGHT] < state[_LIMIT]:
                    break
                self._changed.wait(wait if wait > 0 else None)
            state[_IN_FLIGHT] += 1
            state[_REQUESTS] += 1
            state[_PEAK] = max(state[_PEAK], state[_IN_FLIGHT])
            return int(state[_CUTS])

    def release(
        self, ticket: int, throttled: bool = False, retry_after: float | None = None
    ) -> None:
        """The request that took ``ticket`` is answered (``throttled``: with a 429)."""
        state = self._state
        with self._changed:
            state[_IN_FLIGHT] -= 1
            if not throttled:
                state[_CREDIT] += 1
                if state[_CREDIT] >= state[_LIMIT]:  # a round of healthy answers
                    state[_LIMIT] = min(self.maximum, state[_LIMIT] + 1)
                    state[_CREDIT] = 0
            else:
                if int(state[_CUTS]) == ticket:  # sent before any cut: this burst's first
                    state[_LIMIT] = max(1, state[_LIMIT] // 2)
                    state[_CREDIT] = 0
                    state[_CUTS] += 1
                    state[_LOWEST] = min(state[_LOWEST], state[_LIMIT])
                if retry_after:
                    resume = time.monotonic() + retry_after
                    state[_RESUME_AT] = max(state[_RESUME_AT], resume)
            self._changed.notify_all()

    def start_report(self) -> None:
        """Count :meth:`report`'s figures from now (the peak and lowest from the present)."""
        state = self._state
        with self._changed:
            state[_PEAK] = state[_IN_FLIGHT]
            state[_LOWEST] = state[_LIMIT]
            state[_SINCE] = time.monotonic()
            state[_SINCE_REQUESTS] = state[_REQUESTS]
            state[_SINCE_CUTS] = state[_CUTS]

    def report(self) -> PaceReport:
        state = self._state
        with self._changed:
            return PaceReport(
                maximum=self.maximum,
                limit=int(state[_LIMIT]),
                in_flight=int(state[_IN_FLIGHT]),
                peak=int(state[_PEAK]),
                lowest=int(state[_LOWEST]),
                cuts=int(state[_CUTS] - state[_SINCE_CUTS]),
                requests=int(state[_REQUESTS] - state[_SINCE_REQUESTS]),
                seconds=time.monotonic() - state[_SINCE],
            )


_PACES: dict[tuple[str, int], InFlightLimit] = {}


def pace_for(base_url: str, api_key: str, maximum: int) -> InFlightLimit:
    """The process's limit for this API key at ``base_url`` (made on first use: make it
    before forking the processes that share it)."""
    key = hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()
    pace = _PACES.get((key, maximum))
    if pace is None:
        pace = _PACES[(key, maximum)] = InFlightLimit(maximum)
    return pace
