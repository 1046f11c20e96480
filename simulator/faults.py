"""Faults the simulator injects on demand, to prove the client and the sync survive them.

Each request draws from one seeded random stream, so a given sequence of requests meets the
same faults on every run.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from typing import Literal

_5XX = (
    HTTPStatus.INTERNAL_SERVER_ERROR,
    HTTPStatus.BAD_GATEWAY,
    HTTPStatus.SERVICE_UNAVAILABLE,
    HTTPStatus.GATEWAY_TIMEOUT,
)


@dataclass(frozen=True)
class FaultConfig:
    """Rates are per request, between 0 and 1; all off by default."""

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    retry_after_seconds: float = 0.0
    retry_after_format: Literal["seconds", "date", "none"] = "seconds"
    latency_ms: float = 0.0
    """Added to every response."""
    truncate_rate: float = 0.0
    """The body is cut short and the connection closed mid-response."""
    drop_rate: float = 0.0
    """The connection is closed without any response."""
    reject_cursor_rate: float = 0.0
    """A request that carries a cursor is answered 400, as for an expired cursor."""
    malformed_record_rate: float = 0.0
    """Conversations served with an unreadable ``started_at`` (chosen by id, so the same ones
    every time): records a sync must quarantine."""
    stall_rate: float = 0.0
    """The answer is held back ``stall_seconds``: a client with a shorter read timeout times
    out."""
    stall_seconds: float = 0.0
    non_json_rate: float = 0.0
    """Answered 200 with an HTML error page instead of JSON (a proxy in the way)."""
    repeat_page_rate: float = 0.0
    """A page's cursor leads back to where the page began: the next page repeats its
    conversations (chronological cursor pagination only)."""
    empty_page_rate: float = 0.0
    """An empty page whose cursor leads on to the data (chronological cursor pagination
    only)."""
    schema_drift: bool = False
    """Serve what a newer API might: an unknown field (``sentiment``) on every conversation
    and turn, and ``num_turns`` as a string instead of an integer."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "rate_429",
            "rate_5xx",
            "truncate_rate",
            "drop_rate",
            "reject_cursor_rate",
            "malformed_record_rate",
            "stall_rate",
            "non_json_rate",
            "repeat_page_rate",
            "empty_page_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {name} must be between 0 and 1, got {value}")
        if self.rate_429 + self.rate_5xx > 1.0:
            raise ValueError("rate_429 + rate_5xx must not exceed 1")

    @property
    def alters_records(self) -> bool:
        """Whether records are changed before they are sent (so they cannot come cached)."""
        return self.malformed_record_rate > 0 or self.schema_drift


Fault = Literal[
    "429",
    "5xx",
    "truncate",
    "drop",
    "reject_cursor",
    "stall",
    "non_json",
    "repeat_page",
    "empty_page",
]


class FaultPlan:
    """Decides, request by request, which fault (if any) to inject."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self.injected: dict[str, int] = {}

    def draw(self, has_cursor: bool) -> Fault | None:
        c = self.config
        with self._lock:
            roll = self._rng.random()
            fault: Fault | None = None
            if roll < c.rate_429:
                fault = "429"
            elif roll < c.rate_429 + c.rate_5xx:
                fault = "5xx"
            elif self._rng.random() < c.drop_rate:
                fault = "drop"
            elif has_cursor and self._rng.random() < c.reject_cursor_rate:
                fault = "reject_cursor"
            elif self._rng.random() < c.truncate_rate:
                fault = "truncate"
            # Drawn only when on, so that the faults above meet the same sequence as ever.
            elif c.stall_rate and self._rng.random() < c.stall_rate:
                fault = "stall"
            elif c.non_json_rate and self._rng.random() < c.non_json_rate:
                fault = "non_json"
            elif c.repeat_page_rate and self._rng.random() < c.repeat_page_rate:
                fault = "repeat_page"
            elif c.empty_page_rate and self._rng.random() < c.empty_page_rate:
                fault = "empty_page"
            if fault is not None:
                self.injected[fault] = self.injected.get(fault, 0) + 1
            return fault

    def pick_5xx(self) -> HTTPStatus:
        with self._lock:
            return self._rng.choice(_5XX)

    def retry_after_header(self) -> str | None:
        """The Retry-After value a 429 carries, in the configured form."""
        c = self.config
        if c.retry_after_format == "none":
            return None
        if c.retry_after_format == "date":
            # HTTP dates have whole seconds: round up so the client never waits too little.
            when = datetime.now(UTC) + timedelta(seconds=c.retry_after_seconds + 1)
            return format_datetime(when.replace(microsecond=0), usegmt=True)
        return str(int(c.retry_after_seconds))

    def alter_records(self, conversations: list[dict]) -> None:
        """Apply the record-level faults (malformed records, schema drift) in place."""
        c = self.config
        if c.malformed_record_rate:
            for conversation in conversations:
                digest = hashlib.blake2b(conversation["id"].encode(), digest_size=2).digest()
                if int.from_bytes(digest, "big") / 65536 < c.malformed_record_rate:
                    conversation["started_at"] = "not-a-timestamp"
        if c.schema_drift:
            for conversation in conversations:
                conversation["sentiment"] = {"score": 0.42, "label": "neutral"}
                conversation["num_turns"] = str(conversation["num_turns"])
                for turn in conversation["turns"]:
                    turn["sentiment"] = "neutral"
