"""The simulator's synthetic data: shaped like a contact centre's, deterministic, bounded."""

import collections
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from core import api_contract as api
from core.windows import daily_window
from simulator import Dataset, SimulatorConfig
from simulator.turns import channel_label, served_metrics

WEEK = [date(2026, 11, 16) + timedelta(days=n) for n in range(7)]  # Monday .. Sunday
LATER = datetime(2027, 1, 1, tzinfo=UTC)
METADATA_KEYS = {"llmRequests", "functionEvents", "retrievedTopics", "citedTopic", "nodeTrace"}
LLM_REQUEST_KEYS = {"model", "inputTokens", "outputTokens", "timeToFirstTokenMs"}


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
    assert {c.get("variant_name") for c in conversations} == {"Default", "Spring Promo", None}
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
    # v3 sends "" rather than null for an empty text field that is there.
    assert all(t[f] is not None for t in turns for f in ("user_input", "user_input_dtmf"))


def test_memory_is_bounded_by_the_day_cache_not_the_dataset() -> None:
    dataset = Dataset(SimulatorConfig(conversations_per_day=50))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    served = sum(
        1 for _ in dataset.keys_in("live", ["voice", "chat"], start, start + timedelta(days=200))
    )
    assert served > 200 * 50
    assert dataset._day_index.cache_info().currsize <= Dataset.DAY_CACHE_SIZE


def day_of(dataset: Dataset, day: date, channels=("voice", "chat"), **flags) -> list[dict]:
    window = daily_window(day)
    return list(dataset.conversations_in("live", list(channels), window.start, window.end, **flags))


def test_a_conversation_carries_its_channels_analytics_label() -> None:
    """Voice is VOICE-SIP; webchat was CHAT until the label was renamed WEBCHAT (2026-03-27)."""
    dataset = Dataset(SimulatorConfig(conversations_per_day=100, now=LATER))
    before, after = date(2026, 3, 26), date(2026, 3, 27)
    for day in (before, after):
        assert {c["channel"] for c in day_of(dataset, day, ("voice",))} == {"VOICE-SIP"}
    assert {c["channel"] for c in day_of(dataset, before, ("chat",))} == {"CHAT"}
    assert {c["channel"] for c in day_of(dataset, after, ("chat",))} == {"WEBCHAT"}
    renamed = datetime(2026, 3, 27, tzinfo=UTC)
    assert channel_label("chat", renamed - timedelta(microseconds=1)) == "CHAT"
    assert channel_label("chat", renamed) == "WEBCHAT"
    assert channel_label("voice", renamed - timedelta(days=400)) == "VOICE-SIP"


def test_only_the_required_fields_are_always_there() -> None:
    config = SimulatorConfig(conversations_per_day=200, now=LATER)
    conversations = week_of(Dataset(config), channels=("voice", "chat"))
    for c in conversations:
        assert set(api.REQUIRED_CONVERSATION_FIELDS) <= set(c)
        voice = c["channel"] == "VOICE-SIP"
        assert ("from_number" in c) is ("to_number" in c) is voice  # a chat has no numbers
        assert ("handoff_reason" in c) is ("handoff_destination" in c) is c["handoff"]
        assert "variant_id" in c
    unnamed = sum("variant_name" not in c for c in conversations) / len(conversations)
    no_metrics = sum(c["metrics"] == {} for c in conversations) / len(conversations)
    assert 0.02 < unnamed < 0.1 and 0.02 < no_metrics < 0.1
    # Which conversations lack what is a function of the seed, as everything else is.
    assert week_of(Dataset(config), channels=("voice", "chat")) == conversations


def test_a_metric_written_twice_is_a_list_once_a_string_never_absent() -> None:
    dataset = Dataset(SimulatorConfig(conversations_per_day=300, now=LATER))
    conversations = [c for c in day_of(dataset, WEEK[2]) if c["metrics"]]
    for c in conversations:
        metrics, times = c["metrics"], [t["user_input_datetime"] for t in c["turns"]]
        assert metrics["CALL_DURATION"] == str(c["total_duration"])
        assert metrics["CALL_TURN"] == (times if len(times) >= 2 else times[0])
    assert {type(c["metrics"]["CALL_TURN"]) for c in conversations} == {str, list}
    assert served_metrics(0, []) == {"CALL_DURATION": "0"}  # no turn yet: no CALL_TURN


def test_turn_latency_is_in_seconds_and_only_with_the_flag() -> None:
    dataset = Dataset(SimulatorConfig(conversations_per_day=200, now=LATER))
    plain = day_of(dataset, WEEK[2])
    timed = day_of(dataset, WEEK[2], latency=True)
    assert all(api.T_LATENCY not in t for c in plain for t in c["turns"])
    turns = [t for c in timed for t in c["turns"]]
    for turn in turns:
        answered = datetime.fromisoformat(turn["agent_response_datetime"])
        gap = answered - datetime.fromisoformat(turn["user_input_datetime"])
        assert isinstance(turn[api.T_LATENCY], float)
        assert turn[api.T_LATENCY] == pytest.approx(gap.total_seconds(), abs=0.0005)
    assert turns and max(t[api.T_LATENCY] for t in turns) < 3.0  # seconds, not milliseconds
    assert all(api.R_LATENCY_BREAKDOWN not in c for c in timed)  # not published: off
    for c in timed:
        for turn in c["turns"]:
            del turn[api.T_LATENCY]
    assert timed == plain


def test_every_turn_says_whether_the_caller_barged_in() -> None:
    dataset = Dataset(SimulatorConfig(conversations_per_day=400, now=LATER))
    voice = [t for c in day_of(dataset, WEEK[2], ("voice",)) for t in c["turns"]]
    chat = [t for c in day_of(dataset, WEEK[2], ("chat",)) for t in c["turns"]]
    assert all(type(t[api.T_BARGE_IN]) is bool for t in voice + chat)
    assert 0.05 < sum(t[api.T_BARGE_IN] for t in voice) / len(voice) < 0.15
    assert not any(t[api.T_BARGE_IN] for t in chat)


def test_turn_metadata_only_with_the_flag_camel_case_every_key_optional() -> None:
    dataset = Dataset(SimulatorConfig(conversations_per_day=300, now=LATER))
    plain = day_of(dataset, WEEK[2])
    rich = day_of(dataset, WEEK[2], metadata=True)
    assert all(api.T_METADATA not in t for c in plain for t in c["turns"])
    metadata = [t[api.T_METADATA] for c in rich for t in c["turns"]]
    read = {name for names in api.TURN_METADATA_KEYS.values() for name in names}
    assert {} in metadata and all(set(m) <= METADATA_KEYS <= read for m in metadata)
    for key in METADATA_KEYS:
        assert 0 < sum(key in m for m in metadata) < len(metadata), key
    assert {len(m["llmRequests"]) for m in metadata if "llmRequests" in m} == {1, 2}
    for request in (r for m in metadata for r in m.get("llmRequests", [])):
        assert set(request) == LLM_REQUEST_KEYS and request["inputTokens"] > 0
    for event in (e for m in metadata for e in m.get("functionEvents", [])):
        assert isinstance(event["name"], str) and isinstance(event["arguments"], dict)
    assert all(m["citedTopic"] in m["retrievedTopics"] for m in metadata if "citedTopic" in m)
    # Drawn from a stream of its own: the rest of every conversation is the same.
    for c in rich:
        for turn in c["turns"]:
            del turn[api.T_METADATA]
    assert rich == plain


def test_the_project_without_transcripts_serves_no_turns_but_their_count() -> None:
    config = SimulatorConfig(conversations_per_day=200, now=LATER)
    dataset = Dataset(config)
    hidden_project = config.transcripts_hidden_project
    assert hidden_project == "demo-project-no-transcripts"
    shown = day_of(dataset, WEEK[2], latency=True, metadata=True)
    hidden = day_of(dataset, WEEK[2], latency=True, metadata=True, project_id=hidden_project)
    assert [c["turns"] for c in hidden] == [[]] * len(shown)
    assert [c["num_turns"] for c in hidden] == [len(c["turns"]) for c in shown]
    assert sum(c["num_turns"] for c in hidden) > len(hidden)
    assert {c["project_id"] for c in hidden} == {hidden_project}

    def rest(c: dict) -> dict:
        return {k: v for k, v in c.items() if k not in ("turns", "project_id")}

    assert [rest(c) for c in hidden] == [rest(c) for c in shown]
    assert replace(config, transcripts_hidden_project_id="p-2").transcripts_hidden_project == "p-2"
    assert replace(config, transcripts_hidden_project_id="").transcripts_hidden_project is None


def test_the_assumed_latency_breakdown_only_when_configured_and_asked_for() -> None:
    dataset = Dataset(SimulatorConfig(conversations_per_day=100, now=LATER, latency_breakdown=True))
    assert all(api.R_LATENCY_BREAKDOWN not in c for c in day_of(dataset, WEEK[2]))
    conversations = day_of(dataset, WEEK[2], ("voice",), latency=True)
    for c in conversations:
        breakdown = c[api.R_LATENCY_BREAKDOWN]
        entries = breakdown["turns"]
        assert [e["turn_index"] for e in entries] == list(range(len(c["turns"])))
        assert breakdown["total_ms"] == sum(e["total_ms"] for e in entries)
        for entry, turn in zip(entries, c["turns"], strict=True):
            assert set(entry["stages"]) == set(api.LATENCY_STAGES)
            assert entry["total_ms"] == sum(entry["stages"].values())
            assert turn[api.T_LATENCY] == entry["total_ms"] / 1000
    assert conversations
