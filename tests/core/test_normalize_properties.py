"""Properties of page normalization that must hold for any input the API could send."""

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from core.normalize import normalize_page
from tests.conftest import whole_records

LOADED_AT = datetime(2026, 11, 23, tzinfo=UTC)

# JSON (RFC 8259) has no NaN or infinities, and the client's parser refuses them: no record
# can carry one. Integers are unbounded: beyond 64 bits they take the slower serializer.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
text_or_missing = st.one_of(st.none(), st.just(""), st.text())
timestamps = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.isoformat().replace("+00:00", "Z"))

turn = st.fixed_dictionaries(
    {},
    optional={
        "user_input": text_or_missing,
        "agent_response": text_or_missing,
        "user_input_datetime": timestamps,
        "latency": st.integers(min_value=0, max_value=10**6),
        "intents": st.lists(st.text(), max_size=3),
        "entities": st.lists(st.dictionaries(st.text(), st.text(), max_size=2), max_size=2),
        "is_ood": st.booleans(),
        "unknown_future_field": json_values,
    },
)
conversation = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1),
        "environment": st.sampled_from(["live", "sandbox", "pre-release"]),
        "channel": st.sampled_from(["voice", "chat"]),
        "started_at": timestamps,
        "turns": st.lists(turn, max_size=4),
    },
    optional={
        "num_turns": st.integers(min_value=0, max_value=100),
        "handoff_reason": text_or_missing,
        "metrics": json_values,
        "state": json_values,
        "in_progress": st.booleans(),
        "brand_new_field": json_values,
    },
)


@settings(max_examples=150, deadline=None)
@given(st.lists(conversation, max_size=5, unique_by=lambda c: c["id"]))
def test_valid_conversations_become_rows_with_text_and_raw_intact(records: list[dict]) -> None:
    batch = normalize_page(records, load_id="L", loaded_at=LOADED_AT)
    assert not batch.quarantined
    conversations = batch.conversations.to_pylist()
    turns = batch.turns.to_pylist()
    assert [c["id"] for c in conversations] == [r["id"] for r in records]
    assert len(turns) == sum(len(r["turns"]) for r in records)
    rows = iter(turns)
    wholes = whole_records(conversations, turns, batch.tables["turn_genai"].to_pylist())
    for record, row in zip(records, conversations, strict=True):
        assert wholes[record["id"]] == record  # unknown fields included
        assert row["handoff_reason"] == record.get("handoff_reason")  # "" stays "", missing None
        started = datetime.fromisoformat(record["started_at"])
        assert row["started_at"] == started and row["conversation_date"] == started.date()
        for index, source in enumerate(record["turns"]):
            stored = next(rows)
            assert (stored["conversation_id"], stored["turn_index"]) == (record["id"], index)
            assert stored["user_input"] == source.get("user_input")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(conversation, json_values), max_size=6))
def test_no_record_is_ever_lost_whatever_arrives(records: list) -> None:
    batch = normalize_page(records, load_id="L", loaded_at=LOADED_AT)
    kept = batch.conversations.num_rows
    # A conversation served twice on one page is kept once (its later copy), and counted.
    again = batch.type_issues.get("conversations.served_twice_on_a_page", 0)
    assert kept + again + len(batch.quarantined) == len(records)
    ids = batch.conversations.column("id").to_pylist()
    assert len(ids) == len(set(ids))
    positions = [q.position for q in batch.quarantined]
    assert positions == sorted(set(positions))
    for q in batch.quarantined:
        assert q.reason
        assert json.loads(q.raw) == json.loads(json.dumps(records[q.position], default=repr))


def test_started_at_offsets_become_utc_dates() -> None:
    record = {
        "id": "X",
        "environment": "live",
        "channel": "voice",
        "started_at": "2026-11-20T22:30:00-05:00",  # late evening in New York
        "turns": [],
    }
    (row,) = normalize_page([record], load_id="L", loaded_at=LOADED_AT).conversations.to_pylist()
    assert row["conversation_date"].isoformat() == "2026-11-21"
