"""Whatever the API sends, the sync neither raises nor loses track of a record: property-based
tests feed the normalizer (and then both warehouses) arbitrary conversations: missing and
extra fields, wrong types, huge strings, deep JSON, unpaired surrogates (what an invalid
``\\u`` escape becomes), NUL characters, timestamps with odd offsets. Every record either
lands as a row or is quarantined with a reason."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.normalize import normalize_page
from core.windows import Scope, daily_window
from resources.warehouse import Warehouse, WindowKey, WindowLoad

LOADED_AT = datetime(2026, 11, 23, tzinfo=UTC)
DAY = date(2026, 11, 20)


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value, {"k": value and 1}]
    return value


odd_text = st.one_of(
    st.text(),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # unpaired surrogates
    st.text(st.characters(codec="utf-8"), max_size=5).map(lambda t: f"nul\x00{t}"),
    st.just("é" * 60_000),
    st.just("'; DROP TABLE polyai.turns; --"),
)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=8,
) | st.just(_deep(100))
timestamps = st.one_of(
    st.sampled_from([
        "2026-11-20T10:00:00+14:00", "2026-11-20T10:00:00-12:00", "2026-11-20T10:00:00+05:45",
        "2026-11-20T10:00:00+0530", "2026-11-20T10:00:00", "2026-11-20 10:00:00Z",
        "2026-11-20T23:59:60Z", "20261120T100000Z", "2026-11-20T10:00:00.123456789Z",
        "2026-02-30T10:00:00Z", "", "yesterday",
    ]),
    values,
)  # fmt: skip
turn_fields = st.fixed_dictionaries(
    {},
    optional={
        "user_input": odd_text | values,
        "agent_response": odd_text,
        "user_input_datetime": timestamps,
        "latency": values,
        "intents": st.lists(odd_text, max_size=2) | values,
        "metadata": values,
        "barge_in": values,
    },
)
extra_fields = st.dictionaries(odd_text, values, max_size=2)
turn = st.one_of(
    st.tuples(turn_fields, extra_fields).map(lambda parts: {**parts[1], **parts[0]}),
    values,
)
record = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "id": odd_text | values,
            "environment": st.sampled_from(["live", "sandbox"]) | values,
            "channel": st.sampled_from(["voice", "chat"]) | odd_text,
            "started_at": timestamps,
            "turns": st.lists(turn, max_size=3) | values,
            "num_turns": values,
            "variant_name": odd_text,
            "metrics": values,
            "in_progress": values,
        },
    ),
    values,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(record, max_size=6))
def test_every_record_lands_or_is_quarantined_with_a_reason(records: list) -> None:
    batch = normalize_page(records, load_id="L", loaded_at=LOADED_AT)  # never raises
    ids = batch.conversations.column("id").to_pylist()
    assert len(set(ids)) == len(ids)  # a conversation served twice on a page is kept once
    served_twice = batch.type_issues.get("conversations.served_twice_on_a_page", 0)
    assert len(ids) + served_twice + len(batch.quarantined) == len(records)
    assert all(q.reason for q in batch.quarantined)
    assert sorted(q.position for q in batch.quarantined) == sorted(
        {q.position for q in batch.quarantined}
    )


@pytest.fixture(scope="module")
def shared_warehouses(tmp_path_factory: pytest.TempPathFactory, request) -> dict:
    """One warehouse per engine for every example (each example loads a window anew)."""
    from resources.warehouse.duckdb_engine import DuckDBWarehouse
    from resources.warehouse.postgres_engine import PostgresWarehouse

    folder = tmp_path_factory.mktemp("bad-input")
    made: dict[str, Warehouse] = {"duckdb": DuckDBWarehouse(url=f"duckdb:///{folder}/w.duckdb")}
    try:
        server = request.getfixturevalue("postgres_server")
    except pytest.skip.Exception:
        server = None
    if server is not None:
        from devtools.postgres import new_database

        made["postgresql"] = PostgresWarehouse(url=new_database(server))
    for warehouse in made.values():
        warehouse.ensure_schema()
    return made


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(record, max_size=4))
def test_whatever_normalizes_also_stages_and_publishes(
    shared_warehouses: dict, engine: str, records: list
) -> None:
    if engine not in shared_warehouses:
        pytest.skip("no PostgreSQL server here")
    warehouse = shared_warehouses[engine]
    key = WindowKey("acct", "proj", Scope("live", "voice"), daily_window(DAY))
    load_id = uuid.uuid4().hex
    batch = normalize_page(records, load_id=load_id, loaded_at=LOADED_AT, scope=key.scope)
    window_load = WindowLoad(warehouse, key, load_id)
    window_load.begin()
    window_load.stage(1, batch, None)  # never raises
    rows = window_load.publish().rows
    assert rows["conversations"] == batch.conversations.num_rows
    assert rows["turns"] == batch.turns.num_rows
