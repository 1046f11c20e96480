"""Deterministic synthetic conversations that look like a contact centre's.

Every conversation is a pure function of (seed, environment, channel, day, index): the same
configuration always yields the same data. Nothing is held in memory beyond a small, bounded
cache of per-day indexes (start time, id and arrival time of each conversation that day); a
conversation's full body is generated only when a response includes it.

Time is the simulator's clock (:meth:`Dataset.now`). A conversation is served once it has
*arrived* (most arrive seconds after they start; a few arrive late, minutes after, as records
do in a real pipeline), and it is ``in_progress`` until its last turn is over, so a later
request sees it finished with more turns.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

import orjson

from core import api_contract as api
from simulator.faults import FaultConfig
from simulator.turns import PII_PHRASES as PII_PHRASES
from simulator.turns import Dialogue, draw_dialogue, draw_int, iso

_ENV_WEIGHT = {"live": 1.0, "pre-release": 0.2, "sandbox": 0.1}
_CHANNEL_WEIGHT = {"voice": 1.0, "chat": 0.6}
_CHANNEL_ID_PREFIX = {"voice": "CA", "chat": "CH"}
# Share of the day's volume by UTC hour: quiet nights, a late-morning and an afternoon peak.
_HOURLY_SHAPE = (
    *(1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 20, 19),  # 00-11
    *(16, 17, 19, 18, 15, 12, 9, 7, 5, 4, 3, 2),  # 12-23
)
_WEEKDAY_FACTOR = (1.0, 1.05, 1.0, 0.95, 1.1, 0.6, 0.45)  # Monday .. Sunday
VARIANTS = (("var-default", "Default"), ("var-spring-promo", "Spring Promo"))
_HANDOFF_REASONS = (
    ("caller_requested_agent", "+441234000001"),
    ("payment_issue", "billing-queue"),
    ("out_of_scope", "+441234000002"),
)


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulator serves, to whom, and which faults it injects."""

    account_id: str = "demo-account"
    project_id: str = "demo-project"
    api_key: str = field(default="demo-key", repr=False)
    seed: int = 7
    conversations_per_day: int = 120
    """Volume of the busiest scope (live voice) on an average weekday; others scale from it."""
    max_turns: int = 9
    """A finished conversation has 1 to ``max_turns`` turns, evenly spread (9: five on
    average; the benchmark's 23 gives twelve)."""
    late_arrival_rate: float = 0.03
    """Share of conversations that reach the API minutes after they start."""
    flat_volume: bool = False
    """Every day the same volume, without weekday or random variation (the busiest scope
    then has exactly ``conversations_per_day``): a benchmark's dataset of an exact size."""
    cache_mb: int = 256
    """Finished conversations are kept serialized, least recently served dropped first, up to
    this many megabytes: a finished conversation never changes, and building one in Python
    costs more than sending it (the benchmark raises this to hold its whole dataset)."""
    pii_rate: float = 0.0
    """Share of user turns that also say an email address, a phone or a card number (one of
    ``PII_PHRASES``), for the privacy controls' tests; 0 leaves the data as it always was."""
    now: datetime | None = None
    """The simulator's clock at start; ``None`` follows the real time."""
    faults: FaultConfig = field(default_factory=FaultConfig)


@dataclass(frozen=True)
class DayIndex:
    """One scope's conversations on one day, sorted by (start, id): the API's paging order.

    Times are epoch microseconds; ``arrivals[i]`` is when conversation ``i`` becomes visible.
    """

    starts: tuple[int, ...]
    ids: tuple[str, ...]
    arrivals: tuple[int, ...]


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


def epoch_us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def from_epoch_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def variant_of(seed: int, conversation_id: str) -> tuple[str, str]:
    """A conversation's (variant_id, variant_name): cheap, so filters need not build bodies."""
    digest = hashlib.blake2b(f"{seed}|variant|{conversation_id}".encode(), digest_size=2).digest()
    return VARIANTS[0] if digest[0] < 179 else VARIANTS[1]  # about 70% / 30%


class Dataset:
    """The conversations of one account and project, generated on demand."""

    DAY_CACHE_SIZE = 32  # bounds memory whatever the dataset's size

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._now = config.now
        self._day_index = lru_cache(maxsize=self.DAY_CACHE_SIZE)(self._build_day_index)
        self._serialized: OrderedDict[tuple[str, bool, bool], bytes] = OrderedDict()
        self._serialized_bytes = 0
        self._serialized_lock = threading.Lock()

    def now(self) -> datetime:
        return self._now or datetime.now(UTC)

    def set_now(self, moment: datetime) -> None:
        """Move the clock (tests use it to let conversations arrive and finish)."""
        self._now = moment

    def volume(self, environment: str, channel: str, day: date) -> int:
        """How many conversations one scope has on one day (arrived or not)."""
        weight = _ENV_WEIGHT.get(environment, 0.0) * _CHANNEL_WEIGHT.get(channel, 0.0)
        if weight == 0.0:
            return 0
        if self.config.flat_volume:
            return max(1, round(self.config.conversations_per_day * weight))
        rng = _rng(self.config.seed, "volume", environment, channel, day.isoformat())
        mean = self.config.conversations_per_day * weight * _WEEKDAY_FACTOR[day.weekday()]
        return max(1, round(mean * rng.uniform(0.85, 1.15)))

    def _build_day_index(self, environment: str, channel: str, day: date) -> DayIndex:
        count = self.volume(environment, channel, day)
        rng = _rng(self.config.seed, "index", environment, channel, day.isoformat())
        day_start = epoch_us(datetime.combine(day, time.min, tzinfo=UTC))
        hours = rng.choices(range(24), weights=_HOURLY_SHAPE, k=count)
        prefix = _CHANNEL_ID_PREFIX.get(channel, "CX")
        entries = []
        for hour in hours:
            start = day_start + hour * 3_600_000_000 + rng.randrange(3_600_000_000)
            late = rng.random() < self.config.late_arrival_rate
            delay_s = rng.uniform(300, 3600) if late else rng.uniform(0.5, 5)
            conversation_id = f"{prefix}{rng.getrandbits(128):032x}"
            entries.append((start, conversation_id, start + int(delay_s * 1_000_000)))
        entries.sort()
        return DayIndex(
            tuple(e[0] for e in entries), tuple(e[1] for e in entries), tuple(e[2] for e in entries)
        )

    def keys_in(
        self,
        environment: str,
        channels: list[str],
        start: datetime,
        end: datetime,
        after: tuple[int, str] | None = None,
    ) -> Iterator[tuple[int, str, str]]:
        """(start_us, id, channel) of every arrived conversation starting in [start, end), in
        paging order, strictly after the keyset position ``after`` when it is given."""
        now_us = epoch_us(self.now())
        start_us, end_us = epoch_us(start), min(epoch_us(end), now_us + 1)
        if after is not None:
            start_us = max(start_us, after[0])
        if start_us >= end_us:
            return
        day = from_epoch_us(start_us).date()
        last_day = from_epoch_us(end_us - 1).date()
        while day <= last_day:
            merged = sorted(
                entry
                for channel in channels
                for entry in self._day_slice(environment, channel, day, start_us, end_us, now_us)
            )
            for entry in merged:
                if after is None or (entry[0], entry[1]) > after:
                    yield entry
            day += timedelta(days=1)

    def _day_slice(
        self, environment: str, channel: str, day: date, start_us: int, end_us: int, now_us: int
    ) -> Iterator[tuple[int, str, str]]:
        index = self._day_index(environment, channel, day)
        lo = bisect.bisect_left(index.starts, start_us)
        hi = bisect.bisect_left(index.starts, end_us)
        for i in range(lo, hi):
            if index.arrivals[i] <= now_us:
                yield index.starts[i], index.ids[i], channel

    def conversation(
        self,
        environment: str,
        channel: str,
        start_us: int,
        conversation_id: str,
        genai: bool = True,
    ) -> dict[str, Any]:
        """The full API object of one conversation, as the simulator's clock sees it now,
        with the latency breakdown that ``include_latency`` adds and, when ``genai``, the
        per-turn metadata of the genAI flag (drawn from a stream of its own, so the rest of
        the conversation is the same either way)."""
        rng = _rng(self.config.seed, "conversation", conversation_id)
        genai_rng = _rng(self.config.seed, "genai", conversation_id) if genai else None
        started_at = from_epoch_us(start_us)
        dialogue = draw_dialogue(
            rng,
            genai_rng,
            channel,
            started_at,
            self.now(),
            self.config.max_turns,
            self.config.pii_rate,
        )
        return self._body(rng, environment, channel, conversation_id, started_at, dialogue)

    def _body(
        self,
        rng: random.Random,
        environment: str,
        channel: str,
        conversation_id: str,
        started_at: datetime,
        dialogue: Dialogue,
    ) -> dict[str, Any]:
        """The API object around a conversation's turns, its summary drawn from ``rng`` after
        the turns' draws."""
        turns, in_progress = dialogue.turns, dialogue.in_progress
        total_ms = int((dialogue.end - started_at).total_seconds() * 1000)
        handoff = not in_progress and rng.random() < 0.15
        reason, destination = rng.choice(_HANDOFF_REASONS) if handoff else ("", "")
        variant_id, variant_name = variant_of(self.config.seed, conversation_id)
        voice = channel == "voice"
        from_number = f"+4477009{draw_int(rng, 0, 99999):05d}" if voice else ""
        return {
            "id": conversation_id,
            "account_id": self.config.account_id,
            "project_id": self.config.project_id,
            "environment": environment,
            "started_at": iso(started_at),
            "channel": channel,
            "in_progress": in_progress,
            "variant_id": variant_id,
            "variant_name": variant_name,
            "from_number": from_number,
            "to_number": "+442071234567" if voice else "",
            "num_turns": len(turns),
            "total_duration": total_ms // 1000,
            "polyai_duration": (total_ms // 2000) if handoff else (total_ms // 1000),
            "num_silences": sum(t["is_silence"] for t in turns),
            "num_ood": sum(t["is_ood"] for t in turns),
            "handoff": handoff,
            "handoff_reason": reason,
            "handoff_destination": destination,
            "metrics": {
                "CALL_DURATION": str(total_ms // 1000),
                "CALL_TURN": [t["user_input_datetime"] for t in turns],
            },
            "state": {"language": "en-GB", "authenticated": rng.random() < 0.5},
            "turns": turns,
            api.R_LATENCY: {
                "total_ms": sum(t["total_ms"] for t in dialogue.turn_latency),
                "turns": dialogue.turn_latency,
            },
        }

    def conversation_json(
        self,
        environment: str,
        channel: str,
        start_us: int,
        conversation_id: str,
        latency: bool,
        genai: bool,
    ) -> bytes:
        """One conversation as served with the given flags, serialized: the bytes of
        :meth:`conversation` without the keys the flags leave out, cached once finished."""
        key = (conversation_id, latency, genai)
        with self._serialized_lock:
            cached = self._serialized.get(key)
            if cached is not None:
                self._serialized.move_to_end(key)
                return cached
        body = self.conversation(environment, channel, start_us, conversation_id, genai=genai)
        data = orjson.dumps(without_optional_keys(body, latency=latency, genai=genai))
        budget = self.config.cache_mb * 1_000_000
        if not body["in_progress"] and len(data) <= budget:
            with self._serialized_lock:
                if key not in self._serialized:
                    self._serialized[key] = data
                    self._serialized_bytes += len(data)
                while self._serialized_bytes > budget:
                    _, dropped = self._serialized.popitem(last=False)
                    self._serialized_bytes -= len(dropped)
        return data

    def conversations_in(
        self,
        environment: str,
        channels: list[str],
        start: datetime,
        end: datetime,
        latency: bool = False,
        genai: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every conversation in [start, end) in paging order, as served with the given
        flags (by default without the latency and genAI keys): the truth tests compare with."""
        for start_us, cid, channel in self.keys_in(environment, channels, start, end):
            body = self.conversation(environment, channel, start_us, cid, genai=genai)
            yield without_optional_keys(body, latency=latency, genai=genai)


def without_optional_keys(
    conversation: dict[str, Any], latency: bool = False, genai: bool = False
) -> dict[str, Any]:
    """The conversation as served with the given flags: the keys they add removed otherwise."""
    if not latency:
        conversation.pop(api.R_LATENCY, None)
    if not genai:
        for turn in conversation["turns"]:
            turn.pop(api.R_GENAI_METADATA, None)
    return conversation
