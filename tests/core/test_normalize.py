import json
from datetime import UTC, date, datetime

import pytest

from core import schema
from core.channels import ChannelMap
from core.normalize import LARGE_VALUE_BYTES, normalize_page, parse_timestamp
from core.windows import Scope
from tests.conftest import whole_records

LOADED_AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def conversation(**overrides: object) -> dict:
    record = {
        "id": "CA0001",
        "account_id": "acct",
        "project_id": "proj",
        "environment": "live",
        "started_at": "2026-11-20T23:59:58.5+01:00",
        "channel": "VOICE-SIP",
        "in_progress": False,
        "variant_id": "v1",
        "variant_name": "Default",
        "from_number": "+447700900000",
        "to_number": "",
        "num_turns": 2,
        "total_duration": 31,
        "polyai_duration": 30,
        "num_silences": 0,
        "num_ood": 1,
        "handoff": True,
        "handoff_reason": "caller_requested_agent",
        "handoff_destination": "+441234000001",
        "metrics": {
            "CALL_DURATION": "30",
            "CALL_TURN": ["2022-02-18T12:09:05.12677Z", "2022-02-18T12:09:17.90602Z"],
        },
        "state": {"nested": {"list": [1, 2]}},
        "turns": [
            {
                "user_input": "héllo 👋",
                "user_input_dtmf": "",
                "agent_response": "Hi!",
                "user_input_datetime": "2026-11-20T22:59:59.12677Z",
                "agent_response_datetime": "2026-11-20T23:00:00Z",
                "latency": 0.873,
                "barge_in": False,
                "translated_user_input": "",
                "english_agent_response": "",
                "intents": ["greet"],
                "entities": [{"name": "Ana", "dates": ["today", "tomorrow"]}],
                "is_ood": False,
                "is_silence": False,
            },
            {"agent_response": "Bye", "intents": [], "is_silence": True},
        ],
    }
    record.update(overrides)
    return record


def test_conversation_fields_are_typed_and_started_at_is_utc() -> None:
    batch = normalize_page([conversation()], load_id="L1", loaded_at=LOADED_AT)
    (row,) = batch.conversations.to_pylist()
    assert row["id"] == "CA0001"
    assert row["started_at"] == datetime(2026, 11, 20, 22, 59, 58, 500000, tzinfo=UTC)
    assert row["conversation_date"] == date(2026, 11, 20)  # the UTC date, not the local one
    assert row["handoff"] is True and row["num_ood"] == 1
    assert row["to_number"] == ""
    assert json.loads(row["metrics"]) == conversation()["metrics"]
    assert json.loads(row["state"]) == {"nested": {"list": [1, 2]}}
    assert whole_records(
        [row], batch.turns.to_pylist(), batch.tables["turn_genai"].to_pylist()
    ) == {"CA0001": conversation()}
    assert (row["load_id"], row["loaded_at"]) == ("L1", LOADED_AT)


def test_turns_are_indexed_by_position_and_keep_empty_apart_from_missing() -> None:
    batch = normalize_page([conversation()], load_id="L1", loaded_at=LOADED_AT)
    first, second = batch.turns.to_pylist()
    assert (first["conversation_id"], first["turn_index"]) == ("CA0001", 0)
    assert second["turn_index"] == 1
    assert first["user_input"] == "héllo 👋"
    assert first["user_input_dtmf"] == ""  # sent empty
    assert second["user_input_dtmf"] is None  # not sent at all
    assert first["user_input_datetime"] == datetime(2026, 11, 20, 22, 59, 59, 126770, tzinfo=UTC)
    assert first["intents"] == ["greet"] and second["intents"] == []
    assert json.loads(first["entities"]) == [{"name": "Ana", "dates": ["today", "tomorrow"]}]
    assert (first["environment"], first["channel"]) == ("live", "voice")
    assert (first["latency_s"], first["barge_in"]) == (0.873, False)
    assert (second["latency_s"], second["barge_in"]) == (None, None)  # not sent
    assert first["conversation_date"] == date(2026, 11, 20)


def test_batches_carry_exactly_the_schema_columns() -> None:
    batch = normalize_page([conversation()], load_id="L1", loaded_at=LOADED_AT)
    for table in schema.WINDOW_TABLES:
        assert batch.tables[table.name].schema == schema.arrow_schema(table)


def test_empty_page_gives_empty_batches() -> None:
    batch = normalize_page([], load_id="L1", loaded_at=LOADED_AT)
    assert batch.conversations.num_rows == 0 and batch.turns.num_rows == 0


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"id": ""}, "missing id"),
        ({"started_at": "20th of November"}, "not an ISO 8601"),
        ({"turns": "none"}, "turns: expected a list"),
        ({"channel": None}, "missing channel"),
        ({"turns": [{"user_input": "hi"}, "oops"]}, "turn 1: expected an object"),
    ],
)
def test_bad_records_are_quarantined_and_the_rest_of_the_page_loads(
    overrides: dict, reason: str
) -> None:
    bad = conversation(**overrides)
    batch = normalize_page(
        [conversation(id="C-good-1"), bad, conversation(id="C-good-2")],
        load_id="L",
        loaded_at=LOADED_AT,
    )
    assert batch.conversations.column("id").to_pylist() == ["C-good-1", "C-good-2"]
    assert batch.turns.num_rows == 4
    (quarantined,) = batch.quarantined
    assert quarantined.position == 1
    assert reason in quarantined.reason
    assert json.loads(quarantined.raw) == bad


def test_a_record_that_is_not_an_object_is_quarantined_as_received() -> None:
    batch = normalize_page(["just text", 42], load_id="L", loaded_at=LOADED_AT)
    assert [q.raw for q in batch.quarantined] == ['"just text"', "42"]
    assert batch.conversations.num_rows == 0


def test_changed_types_are_loaded_as_far_as_possible_and_reported() -> None:
    record = conversation(num_turns="2", handoff="true", total_duration="long", variant_id=7)
    record["turns"][0]["latency"] = "0.873"
    record["turns"][1]["latency"] = True
    record["turns"][0]["user_input_datetime"] = "yesterday"
    record["turns"][0]["intents"] = "greet"
    batch = normalize_page([record], load_id="L", loaded_at=LOADED_AT)
    (row,) = batch.conversations.to_pylist()
    assert row["num_turns"] == 2 and row["handoff"] is True
    assert row["total_duration"] is None  # could not be converted: null, reported
    assert row["variant_id"] == "7"
    first = batch.turns.to_pylist()[0]
    assert first["latency_s"] == 0.873 and first["user_input_datetime"] is None
    assert batch.turns.to_pylist()[1]["latency_s"] is None  # a bool is no latency
    assert first["intents"] == ["greet"]
    assert json.loads(row["raw"])["total_duration"] == "long"  # the original is kept
    assert batch.type_issues == {
        "conversations.num_turns": 1,
        "conversations.handoff": 1,
        "conversations.total_duration": 1,
        "conversations.variant_id": 1,
        "turns.latency_s": 2,
        "turns.user_input_datetime": 1,
        "turns.intents": 1,
    }
    assert not batch.quarantined


def test_unknown_fields_are_kept_in_raw() -> None:
    record = conversation(sentiment={"score": 0.8})
    record["turns"][0]["emotion"] = "happy"
    batch = normalize_page([record], load_id="L", loaded_at=LOADED_AT)
    assert json.loads(batch.conversations.column("raw")[0].as_py())["sentiment"] == {"score": 0.8}
    assert json.loads(batch.turns.column("raw")[0].as_py())["emotion"] == "happy"
    assert not batch.type_issues


def test_latency_breakdown_becomes_one_row_per_turn_and_stage() -> None:
    record = conversation(
        latency={
            "total_ms": 900,
            "turns": [
                {"turn_index": 0, "stages": {"speech_recognition": 100, "model": 700}},
                {"turn_index": 1, "stages": {"model": "100"}},
            ],
        }
    )
    rows = normalize_page([record], load_id="L", loaded_at=LOADED_AT).tables["turn_latency"]
    assert [(r["turn_index"], r["stage"], r["latency_ms"]) for r in rows.to_pylist()] == [
        (0, "speech_recognition", 100),
        (0, "model", 700),
        (1, "model", 100),
    ]
    assert {r["conversation_date"] for r in rows.to_pylist()} == {date(2026, 11, 20)}


def test_turn_metadata_in_the_old_assumed_names_becomes_one_row_per_turn() -> None:
    record = conversation()
    meta = {
        "model": "m1",
        "input_tokens": 10,
        "output_tokens": 2,
        "time_to_first_token_ms": 90,
        "function_calls": [{"name": "lookup", "arguments": {"a": 1}}],
        "knowledge_topics": ["hours"],
        "temperature": 0.2,
    }
    record["turns"][1]["metadata"] = meta
    (row,) = (
        normalize_page([record], load_id="L", loaded_at=LOADED_AT).tables["turn_genai"].to_pylist()
    )
    assert (row["conversation_id"], row["turn_index"], row["model"]) == ("CA0001", 1, "m1")
    assert json.loads(row["function_calls"]) == meta["function_calls"]
    assert row["knowledge_topics"] == ["hours"]
    assert json.loads(row["raw"]) == meta  # temperature, unknown to the schema, is kept


def test_naive_timestamp_is_read_as_utc() -> None:
    assert parse_timestamp("2026-01-01T10:00:00", "x") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert parse_timestamp("", "x") is None


def test_turn_metadata_that_is_not_an_object_stays_in_the_turns_raw() -> None:
    record = conversation()
    record["turns"][0]["metadata"] = "not an object"
    batch = normalize_page([record], load_id="L1", loaded_at=LOADED_AT)
    first = batch.turns.to_pylist()[0]
    assert json.loads(first["raw"])["metadata"] == "not an object"  # not lost
    assert batch.type_issues["turn_genai.metadata"] == 1
    assert batch.tables["turn_genai"].num_rows == 0


def test_large_value_bytes_counts_text_values_of_16_kib_or_more_quarantine_included() -> None:
    long_answer = "é" * 10_000  # 20,000 bytes of UTF-8, in agent_response and the turn's raw
    below = "x" * (LARGE_VALUE_BYTES - 100)  # alone, and in its turn's raw below the line too
    record = conversation(
        turns=[{"agent_response": long_answer}, {"user_input": below}],
        metrics={},
        state={},
    )
    rejected = {"id": "CA0002", "started_at": "not a time", "blob": "y" * LARGE_VALUE_BYTES}

    batch = normalize_page([record, rejected], load_id="L1", loaded_at=LOADED_AT)

    turn_raw = batch.turns.column("raw").to_pylist()
    assert len(turn_raw[0].encode()) >= LARGE_VALUE_BYTES > len(turn_raw[1].encode())
    (set_aside,) = batch.quarantined
    assert batch.large_value_bytes == 20_000 + len(turn_raw[0].encode()) + len(set_aside.raw)
    assert (
        normalize_page([conversation()], load_id="L1", loaded_at=LOADED_AT).large_value_bytes == 0
    )


def test_published_camel_case_metadata_fills_the_columns_it_can_and_keeps_the_rest() -> None:
    record = conversation()
    meta = {
        "llmRequests": [
            {"model": "gpt-4o-mini", "inputTokens": 812, "outputTokens": 41},
            {"model": "other", "inputTokens": 100, "outputTokens": 9, "timeToFirstTokenMs": 88},
        ],
        "functionEvents": [{"name": "lookup_booking"}],
        "retrievedTopics": ["opening_hours", {"id": 7}],
        "citedTopic": "opening_hours",
        "nodeTrace": ["start", "booking"],
    }
    record["turns"][0]["metadata"] = meta
    record["turns"][1]["metadata"] = {}  # present, but nothing in it is typed
    batch = normalize_page([record], load_id="L", loaded_at=LOADED_AT)
    first, second = batch.tables["turn_genai"].to_pylist()
    assert (first["model"], first["input_tokens"], first["output_tokens"]) == (
        "gpt-4o-mini",  # the first request's
        912,  # summed over the requests
        50,
    )
    assert first["time_to_first_token_ms"] is None  # the first request gave none
    assert json.loads(first["function_calls"]) == [{"name": "lookup_booking"}]
    assert first["knowledge_topics"] == ["opening_hours", '{"id":7}']
    assert first["cited_topic"] == "opening_hours"
    assert json.loads(first["node_trace"]) == ["start", "booking"]
    assert json.loads(first["llm_requests"]) == meta["llmRequests"]
    assert json.loads(first["raw"]) == meta
    assert second["turn_index"] == 1 and second["model"] is None and second["raw"] == "{}"
    assert "metadata" not in json.loads(batch.turns.column("raw")[0].as_py())


def test_turns_without_metadata_have_no_metadata_rows() -> None:
    batch = normalize_page([conversation()], load_id="L", loaded_at=LOADED_AT)
    assert batch.tables["turn_genai"].num_rows == 0 and batch.turns.num_rows == 2


def test_token_counts_that_are_not_all_numbers_give_no_total() -> None:
    record = conversation()
    record["turns"][0]["metadata"] = {
        "llmRequests": [{"inputTokens": 5, "outputTokens": 1}, {"inputTokens": "many"}]
    }
    batch = normalize_page([record], load_id="L", loaded_at=LOADED_AT)
    (row,) = batch.tables["turn_genai"].to_pylist()
    assert (row["input_tokens"], row["output_tokens"]) == (None, 1)
    assert batch.type_issues["turn_genai.llm_requests.input_tokens"] == 1


def test_a_label_is_stored_beside_the_configured_channel_it_maps_to() -> None:
    voice = Scope("live", "voice")
    chat = Scope("live", "chat")
    batch = normalize_page([conversation()], load_id="L", loaded_at=LOADED_AT, scope=voice)
    (row,) = batch.conversations.to_pylist()
    assert (row["channel"], row["channel_label"]) == ("voice", "VOICE-SIP")
    assert set(batch.turns.column("channel").to_pylist()) == {"voice"}
    for label in ("WEBCHAT", "CHAT", "chat"):
        batch = normalize_page(
            [conversation(channel=label)], load_id="L", loaded_at=LOADED_AT, scope=chat
        )
        assert batch.conversations.to_pylist()[0]["channel"] == "chat", label
    # Without a scope (a QA sample's, a test's), the label's channel is looked up.
    batch = normalize_page([conversation(channel="WEBCHAT")], load_id="L", loaded_at=LOADED_AT)
    assert batch.conversations.to_pylist()[0]["channel"] == "chat"


def test_a_label_of_another_channel_or_of_none_is_quarantined_naming_the_mapping() -> None:
    records = [conversation(id="A", channel="WEBCHAT"), conversation(id="B", channel="SMS")]
    batch = normalize_page(records, load_id="L", loaded_at=LOADED_AT, scope=Scope("live", "voice"))
    assert batch.conversations.num_rows == 0
    other, unknown = batch.quarantined
    assert "'WEBCHAT' (channel 'chat')" in other.reason and "live.voice" in other.reason
    assert "unknown channel label 'SMS'" in unknown.reason
    assert "POLYAI_CHANNEL_MAP" in unknown.reason
    # Mapped by the setting, the same record loads.
    mapped = ChannelMap.parse("voice=VOICE-SIP,SMS")
    batch = normalize_page(
        records[1:],
        load_id="L",
        loaded_at=LOADED_AT,
        scope=Scope("live", "voice"),
        channels=mapped,
    )
    assert batch.conversations.to_pylist()[0]["channel_label"] == "SMS"


def test_transcripts_hidden_load_the_conversation_without_turns() -> None:
    record = conversation(turns=[], num_turns=3)
    batch = normalize_page([record], load_id="L", loaded_at=LOADED_AT)
    assert batch.conversations.to_pylist()[0]["num_turns"] == 3
    assert batch.turns.num_rows == 0 and not batch.quarantined and not batch.type_issues


def test_a_latency_no_float_column_can_hold_is_null_and_counted_not_a_failed_page() -> None:
    turns = [{"latency": v} for v in (10**30, 2**64, 10**400, "nan", "0.25", 0.5)]
    batch = normalize_page([conversation(turns=turns)], load_id="L", loaded_at=LOADED_AT)
    assert batch.turns.column("latency_s").to_pylist() == [1e30, 2.0**64, None, None, 0.25, 0.5]
    assert batch.type_issues["turns.latency_s"] == 5  # all but the float itself
