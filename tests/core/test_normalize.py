import json
from datetime import UTC, date, datetime

import pytest

from core import schema
from core.normalize import RecordError, normalize_page, parse_timestamp

LOADED_AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def conversation(**overrides: object) -> dict:
    record = {
        "id": "CA0001",
        "account_id": "acct",
        "project_id": "proj",
        "environment": "live",
        "started_at": "2026-11-20T23:59:58.5+01:00",
        "channel": "voice",
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
        "metrics": {"CALL_DURATION": "30", "CALL_TURN": ["2022-02-18T12:09:05.12677Z"]},
        "state": {"nested": {"list": [1, 2]}},
        "turns": [
            {
                "user_input": "héllo 👋",
                "user_input_dtmf": "",
                "agent_response": "Hi!",
                "user_input_datetime": "2026-11-20T22:59:59.12677Z",
                "agent_response_datetime": "2026-11-20T23:00:00Z",
                "latency": 873,
                "translated_user_input": "",
                "english_agent_response": "",
                "intents": ["greet"],
                "entities": [{"type": "name", "value": "Ana"}],
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
    assert json.loads(row["raw"]) == conversation()
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
    assert json.loads(first["entities"]) == [{"type": "name", "value": "Ana"}]
    assert (first["environment"], first["channel"]) == ("live", "voice")
    assert first["conversation_date"] == date(2026, 11, 20)


def test_batches_carry_exactly_the_schema_columns() -> None:
    batch = normalize_page([conversation()], load_id="L1", loaded_at=LOADED_AT)
    assert batch.conversations.schema == schema.arrow_schema(schema.conversations)
    assert batch.turns.schema == schema.arrow_schema(schema.turns)


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
    ],
)
def test_bad_records_name_the_conversation_and_the_reason(overrides: dict, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        normalize_page(
            [conversation(), conversation(**overrides)], load_id="L", loaded_at=LOADED_AT
        )


def test_naive_timestamp_is_read_as_utc() -> None:
    assert parse_timestamp("2026-01-01T10:00:00", "x") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert parse_timestamp("", "x") is None
