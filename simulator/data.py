"""Deterministic synthetic conversations that look like a contact centre's.

Every conversation is a pure function of (seed, environment, channel, day, index): the same
configuration always yields the same data. Nothing is held in memory beyond a small, bounded
cache of per-day indexes (start time, id and arrival time of each conversation that day); a
conversation's full body is generated only when a response includes it.

Time is the simulator's clock (:meth:`Dataset.now`). A conversation is served once it has
*arrived* (most arrive seconds after they start; a few arrive late, minutes after, as records
do in a real pipeline), and it is ``in_progress`` until its last turn is over, so a later
request sees it finished with more turns.

Channels are kept by their internal names (``voice``, ``chat``: ids, volumes, weights); a
served conversation carries the analytics label PolyAI publishes instead (``VOICE-SIP``,
``WEBCHAT``, or ``CHAT`` for chats before the label was renamed). Only the fields the spec
requires are always there: others are left out where a real response leaves them out.
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
from simulator.turns import (
    Dialogue,
    Omitted,
    channel_label,
    draw_dialogue,
    draw_int,
    iso,
    served_metrics,
    without_optional_keys,
)

_ENV_WEIGHT = {"live": 1.0, "pre-release": 0.2, "sandbox": 0.1}
_CHANNEL_WEIGHT = {"voice": 1.0, "chat": 0.6}
CHANNELS = tuple(_CHANNEL_WEIGHT)
"""The simulator's internal channel names."""
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
    latency_breakdown: bool = False
    """Also serve, with ``include_latency=true``, the conversation-level latency breakdown by
    turn and stage (``api.R_LATENCY_BREAKDOWN``). PolyAI publishes no such object (only each
    turn's ``latency`` in seconds), so it is off by default; the stage table's tests turn it
    on."""
    transcripts_hidden_project_id: str | None = None
    """A second project of the same account and key whose "Conversation transcript" setting
    is off: it serves the same conversations (its own id as ``project_id``) with ``turns: []``
    while ``num_turns`` keeps the real count, and transcript or semantic search on it matches
    nothing. ``None``: ``f"{project_id}-no-transcripts"``; ``""``: no such project."""
    faults: FaultConfig = field(default_factory=FaultConfig)

    @property
    def transcripts_hidden_project(self) -> str | None:
        """The id of the project that serves no transcripts, if there is one."""
        if self.transcripts_hidden_project_id is None:
            return f"{self.project_id}-no-transcripts"
        return self.transcripts_hidden_project_id or None


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

    def transcripts_hidden(self, project_id: str | None) -> bool:
        """Whether ``project_id`` is the project whose transcript access is off."""
        return project_id is not None and project_id == self.config.transcripts_hidden_project

    def conversation(
        self,
        environment: str,
        channel: str,
        start_us: int,
        conversation_id: str,
        metadata: bool = True,
        project_id: str | None = None,
    ) -> dict[str, Any]:
        """The full API object of one conversation of an internal ``channel``, as the
        simulator's clock sees it now and ``project_id`` (default: the configured project)
        serves it: each turn's ``latency``, the assumed breakdown when the configuration
        serves one and, when ``metadata``, each turn's ``metadata`` (drawn from a stream of
        its own, so the rest of the conversation is the same either way).
        :func:`without_optional_keys` removes what a request's flags leave out."""
        seed, hidden = self.config.seed, self.transcripts_hidden(project_id)
        rng = _rng(seed, "conversation", conversation_id)
        metadata_rng = _rng(seed, "genai", conversation_id) if metadata and not hidden else None
        # What PolyAI publishes beyond the first model (omitted fields, barge-in) comes from
        # a stream of its own: the draws above stay those of every earlier version.
        shape_rng = _rng(seed, "shape", conversation_id)
        omitted = Omitted.draw(shape_rng)
        started_at = from_epoch_us(start_us)
        dialogue = draw_dialogue(
            rng,
            metadata_rng,
            shape_rng,
            channel,
            started_at,
            self.now(),
            self.config.max_turns,
            self.config.pii_rate,
        )
        body = self._body(rng, environment, channel, conversation_id, started_at, dialogue, omitted)
        if project_id is not None:
            body["project_id"] = project_id
        if hidden:
            body["turns"] = []
            if api.R_LATENCY_BREAKDOWN in body:
                body[api.R_LATENCY_BREAKDOWN]["turns"] = []
        return body

    def _body(
        self,
        rng: random.Random,
        environment: str,
        channel: str,
        conversation_id: str,
        started_at: datetime,
        dialogue: Dialogue,
        omitted: Omitted,
    ) -> dict[str, Any]:
        """The API object around a conversation's turns, its summary drawn from ``rng`` after
        the turns' draws; optional fields left out where a real response leaves them out."""
        turns, in_progress = dialogue.turns, dialogue.in_progress
        total_ms = int((dialogue.end - started_at).total_seconds() * 1000)
        handoff = not in_progress and rng.random() < 0.15
        reason, destination = rng.choice(_HANDOFF_REASONS) if handoff else ("", "")
        variant_id, variant_name = variant_of(self.config.seed, conversation_id)
        body: dict[str, Any] = {
            "id": conversation_id,
            "account_id": self.config.account_id,
            "project_id": self.config.project_id,
            "environment": environment,
            "started_at": iso(started_at),
            "channel": channel_label(channel, started_at),
            "in_progress": in_progress,
            "variant_id": variant_id,
        }
        if not omitted.variant_name:
            body["variant_name"] = variant_name
        if channel == "voice":  # a chat has no phone numbers
            body["from_number"] = f"+4477009{draw_int(rng, 0, 99999):05d}"
            body["to_number"] = "+442071234567"
        body["num_turns"] = len(turns)
        body["total_duration"] = total_ms // 1000
        body["polyai_duration"] = (total_ms // 2000) if handoff else (total_ms // 1000)
        body["num_silences"] = sum(t["is_silence"] for t in turns)
        body["num_ood"] = sum(t["is_ood"] for t in turns)
        body["handoff"] = handoff
        if handoff:
            body["handoff_reason"] = reason
            body["handoff_destination"] = destination
        body["metrics"] = {} if omitted.metrics else served_metrics(total_ms // 1000, turns)
        body["state"] = {"language": "en-GB", "authenticated": rng.random() < 0.5}
        body["turns"] = turns
        if self.config.latency_breakdown:
            body[api.R_LATENCY_BREAKDOWN] = {
                "total_ms": sum(t["total_ms"] for t in dialogue.turn_latency),
                "turns": dialogue.turn_latency,
            }
        return body

    def conversation_json(
        self,
        environment: str,
        channel: str,
        start_us: int,
        conversation_id: str,
        latency: bool,
        metadata: bool,
        project_id: str | None = None,
    ) -> bytes:
        """One conversation as served with the given flags to ``project_id``, serialized:
        the bytes of :meth:`conversation` without the keys the flags leave out, cached once
        finished (by everything that changes them)."""
        key = (conversation_id, latency, metadata, self.transcripts_hidden(project_id))
        with self._serialized_lock:
            cached = self._serialized.get(key)
            if cached is not None:
                self._serialized.move_to_end(key)
                return cached
        body = self.conversation(
            environment, channel, start_us, conversation_id, metadata, project_id
        )
        data = orjson.dumps(without_optional_keys(body, latency=latency, metadata=metadata))
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
        metadata: bool = False,
        *,
        project_id: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every conversation of the internal ``channels`` in [start, end) in paging order,
        as served to ``project_id`` with the given flags (by default without the turns'
        latency and metadata): the truth tests compare with."""
        for start_us, cid, channel in self.keys_in(environment, channels, start, end):
            body = self.conversation(environment, channel, start_us, cid, metadata, project_id)
            yield without_optional_keys(body, latency=latency, metadata=metadata)
