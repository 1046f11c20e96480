"""The simulator's synthetic data: shaped like a contact centre's, deterministic, bounded."""

import collections
from datetime import UTC, date, datetime, timedelta

from core.windows import daily_window
from simulator import Dataset, SimulatorConfig

WEEK = [date(2026, 11, 16) + timedelta(days=n) for n in range(7)]  # Monday .. Sunday


def week_of(dataset: Dataset, environment: str = "live", channels=("voice",)) -> list[dict]:
    return [
        c
        for day in WEEK
        for c in dataset.conversations_in(
            environment, list(channels), daily_window(day).start, daily_window(day).end
        )
    ]


def test_volume_follows_the_day_and_the_week() -> None:
    dataset = Dataset(
        SimulatorConfig(conversations_per_day=500, now=datetime(2027, 1, 1, tzinfo=UTC))
    )
    conversations = week_of(dataset)
    by_hour = collections.Counter(
        datetime.fromisoformat(c["started_at"]).hour for c in conversations
    )
    assert by_hour[10] > 5 * by_hour[3]
    weekday = sum(dataset.volume("live", "voice", d) for d in WEEK[:5]) / 5
    weekend = sum(dataset.volume("live", "voice", d) for d in WEEK[5:]) / 2
    assert weekend < 0.7 * weekday


def test_scopes_have_their_own_volumes() -> None:
    dataset = Dataset(SimulatorConfig(conversations_per_day=1000))
    day = WEEK[2]
    live_voice = dataset.volume("live", "voice", day)
    assert dataset.volume("live", "chat", day) < live_voice
    assert dataset.volume("sandbox", "voice", day) < dataset.volume("pre-release", "voice", day)
    assert dataset.volume("live", "sms", day) == 0


def test_conversations_carry_the_variety_of_a_contact_centre() -> None:
    dataset = Dataset(
        SimulatorConfig(conversations_per_day=400, now=datetime(2027, 1, 1, tzinfo=UTC))
    )
    conversations = week_of(dataset, channels=("voice", "chat"))
    turns = [t for c in conversations for t in c["turns"]]
    handoffs = [c for c in conversations if c["handoff"]]
    assert handoffs and all(c["handoff_reason"] and c["handoff_destination"] for c in handoffs)
    assert all(c["handoff_reason"] == "" for c in conversations if not c["handoff"])
    assert {c["variant_name"] for c in conversations} == {"Default", "Spring Promo"}
    assert any(t["is_silence"] and t["user_input"] == "" for t in turns)
    assert any(t["is_ood"] for t in turns)
    assert any(t["user_input_dtmf"] for t in turns)
    assert any(t["translated_user_input"] and t["english_agent_response"] for t in turns)
    assert any(any(ord(ch) > 0xFFFF for ch in t["user_input"]) for t in turns)  # emoji
    assert any(t["intents"] for t in turns) and any(t["entities"] for t in turns)
    for c in conversations:
        assert c["num_turns"] == len(c["turns"])
        assert c["num_silences"] == sum(t["is_silence"] for t in c["turns"])
        assert c["num_ood"] == sum(t["is_ood"] for t in c["turns"])
    chat_numbers = {c["from_number"] for c in conversations if c["channel"] == "chat"}
    assert chat_numbers == {""}  # v3 sends "" rather than null for empty text


def test_memory_is_bounded_by_the_day_cache_not_the_dataset() -> None:
    dataset = Dataset(SimulatorConfig(conversations_per_day=50))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    served = sum(
        1 for _ in dataset.keys_in("live", ["voice", "chat"], start, start + timedelta(days=200))
    )
    assert served > 200 * 50
    assert dataset._day_index.cache_info().currsize <= Dataset.DAY_CACHE_SIZE
