"""Deterministic synthetic conversations.

Every conversation is a pure function of (seed, environment, channel, day, index): the same
configuration always yields the same data, and nothing is held in memory beyond a small cache
of per-day indexes (the start time and id of each conversation that day). A conversation's
full body is generated only when a page that includes it is served.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

# Relative volume by environment and channel; live voice is the busiest scope.
_ENV_WEIGHT = {"live": 1.0, "pre-release": 0.2, "sandbox": 0.1}
_CHANNEL_WEIGHT = {"voice": 1.0, "chat": 0.6}
_CHANNEL_ID_PREFIX = {"voice": "CA", "chat": "CH"}
# Share of the day's volume by UTC hour: quiet nights, a late-morning and an afternoon peak.
_HOURLY_SHAPE = (
    *(1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 20, 19),  # 00-11
    *(16, 17, 19, 18, 15, 12, 9, 7, 5, 4, 3, 2),  # 12-23
)
_VARIANTS = [("var-default", "Default"), ("var-spring-promo", "Spring Promo")]
_HANDOFF_REASONS = [
    ("caller_requested_agent", "+441234000001"),
    ("payment_issue", "billing-queue"),
    ("out_of_scope", "+441234000002"),
]
_UTTERANCES = [
    ("I'd like to book a table for two tonight", "Of course! What time would suit you?"),
    ("Can I change my reservation?", "Sure, could you tell me the name on the booking?"),
    ("What are your opening hours?", "We're open from 9am to 10pm every day."),
    ("¿Hablan español?", "Sí, puedo ayudarle en español."),
    ("Je voudrais annuler ma commande", "Bien sûr, je peux vous aider à annuler."),
    ("my parcel hasn't arrived 📦", "I'm sorry to hear that. Let me check the status for you."),
    ("", "Sorry, I didn't catch that. Could you say it again?"),
    ("Talk to a human please", "Let me transfer you to a colleague."),
]
_INTENTS = ["book_table", "change_booking", "opening_hours", "cancel_order", "track_parcel"]


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulator serves and to whom."""

    account_id: str = "demo-account"
    project_id: str = "demo-project"
    api_key: str = field(default="demo-key", repr=False)
    seed: int = 7
    conversations_per_day: int = 120
    """Volume of the busiest scope (live voice) on an average day; others scale from it."""
    now: datetime | None = None
    """The simulator's clock; ``None`` follows the real time. Nothing after it is served."""

    def current_time(self) -> datetime:
        return self.now or datetime.now(UTC)


@dataclass(frozen=True)
class DayIndex:
    """The start times (epoch microseconds) and ids of one scope's conversations on one day,
    sorted by (start, id): the order the API pages in."""

    starts: tuple[int, ...]
    ids: tuple[str, ...]


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _epoch_us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _from_epoch_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def iso(moment: datetime) -> str:
    """ISO 8601 with microseconds and a ``Z`` suffix, as the v3 API writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Dataset:
    """The conversations of one account and project, generated on demand."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._day_index = lru_cache(maxsize=256)(self._build_day_index)

    def volume(self, environment: str, channel: str, day: date) -> int:
        weight = _ENV_WEIGHT.get(environment, 0.0) * _CHANNEL_WEIGHT.get(channel, 0.0)
        if weight == 0.0:
            return 0
        rng = _rng(self.config.seed, "volume", environment, channel, day.isoformat())
        weekday_factor = 0.6 if day.weekday() >= 5 else 1.0
        jitter = rng.uniform(0.8, 1.2)
        return max(1, round(self.config.conversations_per_day * weight * weekday_factor * jitter))

    def _build_day_index(self, environment: str, channel: str, day: date) -> DayIndex:
        count = self.volume(environment, channel, day)
        rng = _rng(self.config.seed, "index", environment, channel, day.isoformat())
        day_start = _epoch_us(datetime.combine(day, time.min, tzinfo=UTC))
        hours = rng.choices(range(24), weights=_HOURLY_SHAPE, k=count)
        prefix = _CHANNEL_ID_PREFIX.get(channel, "CX")
        entries = sorted(
            (
                day_start + hour * 3_600_000_000 + rng.randrange(3_600_000_000),
                f"{prefix}{rng.getrandbits(128):032x}",
            )
            for hour in hours
        )
        return DayIndex(tuple(s for s, _ in entries), tuple(i for _, i in entries))

    def day_index(self, environment: str, channel: str, day: date) -> DayIndex:
        return self._day_index(environment, channel, day)

    def keys_in(
        self,
        environment: str,
        channels: list[str],
        start: datetime,
        end: datetime,
        after: tuple[int, str] | None = None,
    ) -> Iterator[tuple[int, str, str]]:
        """(start_us, id, channel) of every conversation in [start, end), in paging order,
        strictly after the keyset position ``after`` when it is given."""
        now_us = _epoch_us(self.config.current_time())
        start_us, end_us = _epoch_us(start), min(_epoch_us(end), now_us + 1)
        day = start.astimezone(UTC).date()
        last_day = (end - timedelta(microseconds=1)).astimezone(UTC).date()
        while day <= last_day:
            merged = sorted(
                (s, cid, channel)
                for channel in channels
                for s, cid in self._day_slice(environment, channel, day, start_us, end_us)
            )
            for entry in merged:
                if after is None or (entry[0], entry[1]) > after:
                    yield entry
            day += timedelta(days=1)

    def _day_slice(
        self, environment: str, channel: str, day: date, start_us: int, end_us: int
    ) -> Iterator[tuple[int, str]]:
        index = self.day_index(environment, channel, day)
        lo = bisect.bisect_left(index.starts, start_us)
        hi = bisect.bisect_left(index.starts, end_us)
        for i in range(lo, hi):
            yield index.starts[i], index.ids[i]

    def conversation(
        self, environment: str, channel: str, start_us: int, conversation_id: str
    ) -> dict[str, Any]:
        """The full API object of one conversation, as the simulator's clock sees it now."""
        rng = _rng(self.config.seed, "conversation", conversation_id)
        started_at = _from_epoch_us(start_us)
        planned_turns = rng.randint(1, 8)
        turns: list[dict[str, Any]] = []
        moment = started_at
        now = self.config.current_time()
        num_silences = num_ood = 0
        for _ in range(planned_turns):
            user_at = moment + timedelta(milliseconds=rng.randint(1500, 9000))
            latency = rng.randint(250, 2200)
            agent_at = user_at + timedelta(milliseconds=latency)
            if agent_at > now:
                break
            user, agent = rng.choice(_UTTERANCES)
            is_silence = user == ""
            is_ood = rng.random() < 0.08
            num_silences += is_silence
            num_ood += is_ood
            turns.append(
                {
                    "user_input": user,
                    "user_input_dtmf": str(rng.randint(0, 9)) if rng.random() < 0.05 else "",
                    "agent_response": agent,
                    "user_input_datetime": iso(user_at),
                    "agent_response_datetime": iso(agent_at),
                    "latency": latency,
                    "translated_user_input": "",
                    "english_agent_response": "",
                    "intents": rng.sample(_INTENTS, k=rng.randint(0, 2)),
                    "entities": (
                        [{"type": "party_size", "value": str(rng.randint(1, 8))}]
                        if rng.random() < 0.3
                        else []
                    ),
                    "is_ood": is_ood,
                    "is_silence": is_silence,
                }
            )
            moment = agent_at
        in_progress = len(turns) < planned_turns
        total_ms = int((moment - started_at).total_seconds() * 1000)
        handoff = not in_progress and rng.random() < 0.15
        reason, destination = rng.choice(_HANDOFF_REASONS) if handoff else ("", "")
        variant_id, variant_name = rng.choice(_VARIANTS)
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
            "from_number": f"+4477009{rng.randint(0, 99999):05d}" if channel == "voice" else "",
            "to_number": "+442071234567" if channel == "voice" else "",
            "num_turns": len(turns),
            "total_duration": total_ms // 1000,
            "polyai_duration": (total_ms // 1000) if not handoff else (total_ms // 2000),
            "num_silences": num_silences,
            "num_ood": num_ood,
            "handoff": handoff,
            "handoff_reason": reason,
            "handoff_destination": destination,
            "metrics": {
                "CALL_DURATION": str(total_ms // 1000),
                "CALL_TURN": [t["user_input_datetime"] for t in turns],
            },
            "state": {"language": "en-GB", "authenticated": rng.random() < 0.5},
            "turns": turns,
        }

    def conversations_in(
        self, environment: str, channels: list[str], start: datetime, end: datetime
    ) -> Iterator[dict[str, Any]]:
        """Every conversation in [start, end), in paging order: the truth tests compare with."""
        for start_us, cid, channel in self.keys_in(environment, channels, start, end):
            yield self.conversation(environment, channel, start_us, cid)
