"""End to end through Dagster: simulator over loopback -> sync asset -> DuckDB file."""

import json
from datetime import timedelta

import pandas as pd
from dagster import DagsterInstance

from assets.keys import CONVERSATIONS, TURN_GENAI, TURN_LATENCY, TURNS
from core.names import SYNC_STEP
from core.windows import Scope, daily_window
from pipelines.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from pipelines.partitions import partition_key
from resources.warehouse import Warehouse
from simulator import SimulatorServer
from sync import window as window_sync
from tests.conftest import SYNC_DAY, whole_records

LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)
CONVERSATION_SCALARS = [
    "account_id", "project_id", "environment", "in_progress", "variant_id",
    "variant_name", "from_number", "to_number", "num_turns", "total_duration",
    "polyai_duration", "num_silences", "num_ood", "handoff", "handoff_reason",
    "handoff_destination",
]  # fmt: skip
TURN_SCALARS = [
    "user_input", "user_input_dtmf", "agent_response", "translated_user_input",
    "english_agent_response", "is_ood", "is_silence", "barge_in",
]  # fmt: skip
METADATA_LISTS = {"function_calls": "functionEvents", "node_trace": "nodeTrace",
                  "llm_requests": "llmRequests"}  # fmt: skip


def same(stored: object, served: dict, field: str) -> bool:
    """Whether a stored value is what was served; a field left out is stored null."""
    if field not in served:
        return stored is None or pd.isna(stored)
    return stored == served[field]


def ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value).tz_convert("UTC")


def test_partition_lands_every_field_and_rerun_adds_no_duplicates(
    run_sync_job, simulator: SimulatorServer, warehouse: Warehouse
) -> None:
    expected = list(
        simulator.dataset.conversations_in(
            "live", ["voice"], WINDOW.start, WINDOW.end, latency=True, metadata=True
        )
    )
    assert len(expected) > 100  # several pages at the client's page size
    # The published shapes only: labels, float latency, metadata, no per-stage breakdown.
    assert {c["channel"] for c in expected} == {"VOICE-SIP"}
    assert not any("latency" in c for c in expected)

    result = run_sync_job()
    counts = {
        m.asset_key: m.metadata["dagster/row_count"].value
        for m in result.asset_materializations_for_node("polyai_conversations_sync")
        if m.asset_key in (CONVERSATIONS, TURNS, TURN_LATENCY, TURN_GENAI)
    }
    num_turns = sum(len(c["turns"]) for c in expected)
    assert counts == {
        CONVERSATIONS: len(expected),
        TURNS: num_turns,
        TURN_LATENCY: 0,  # the assumed breakdown is not served: its table stays empty
        TURN_GENAI: num_turns,
    }

    conversations = warehouse.read_table("conversations").set_index("id")
    turns = warehouse.read_table("turns").set_index(["conversation_id", "turn_index"])
    latency = warehouse.read_table("turn_latency").set_index(
        ["conversation_id", "turn_index", "stage"]
    )
    genai = warehouse.read_table("turn_genai").set_index(["conversation_id", "turn_index"])
    assert len(genai) == len(turns)
    assert len(latency) == 0
    assert sorted(conversations.index) == sorted(c["id"] for c in expected)
    assert len(turns) == sum(len(c["turns"]) for c in expected)

    wholes = whole_records(
        conversations.reset_index().to_dict("records"),
        turns.reset_index().to_dict("records"),
        genai.reset_index().to_dict("records"),
    )
    for source in expected:  # the whole window, field by field
        assert wholes[source["id"]] == source  # raw: nothing lost, each part stored once
        row = conversations.loc[source["id"]]
        for field in CONVERSATION_SCALARS:
            assert same(row[field], source, field), (source["id"], field)
        assert (row["channel"], row["channel_label"]) == ("voice", "VOICE-SIP")
        assert row["started_at"] == ts(source["started_at"])
        assert row["conversation_date"] == SYNC_DAY
        assert json.loads(row["metrics"]) == source["metrics"]  # a list where written twice
        assert json.loads(row["state"]) == source["state"]
        for index, turn in enumerate(source["turns"]):
            stored = turns.loc[(source["id"], index)]
            for field in TURN_SCALARS:
                assert same(stored[field], turn, field), (source["id"], index, field)
            assert stored["latency_s"] == turn["latency"] and 0 < turn["latency"] < 10
            assert stored["user_input_datetime"] == ts(turn["user_input_datetime"])
            assert stored["agent_response_datetime"] == ts(turn["agent_response_datetime"])
            assert list(stored["intents"]) == turn["intents"]
            assert json.loads(stored["entities"]) == turn["entities"]
            meta = turn["metadata"]
            stored_meta = genai.loc[(source["id"], index)]
            requests = meta.get("llmRequests", [])
            assert same(stored_meta["model"], requests[0] if requests else {}, "model")
            if requests:
                assert stored_meta["input_tokens"] == sum(r["inputTokens"] for r in requests)
            for column, key in METADATA_LISTS.items():  # JSON columns: null when not sent
                stored_json = stored_meta[column]
                assert (
                    json.loads(stored_json) if isinstance(stored_json, str) else None
                ) == meta.get(key)
            assert same(stored_meta["cited_topic"], meta, "citedTopic")
            if "retrievedTopics" in meta:
                assert list(stored_meta["knowledge_topics"]) == meta["retrievedTopics"]
            assert stored_meta["conversation_date"] == SYNC_DAY

    first_load = conversations["load_id"].iloc[0]
    run_sync_job()
    again = warehouse.read_table("conversations")
    assert len(again) == len(expected) and again["id"].is_unique
    again_turns = warehouse.read_table("turns")
    assert len(again_turns) == len(turns)
    assert not again_turns.duplicated(["conversation_id", "turn_index"]).any()
    assert again["load_id"].nunique() == 1 and again["load_id"].iloc[0] != first_load
    assert set(warehouse.read_table("turn_genai")["load_id"]) == set(again["load_id"])
    assert len(warehouse.read_table("turn_genai")) == len(turns)


def test_scopes_of_one_day_do_not_overwrite_each_other(
    run_sync_job, simulator: SimulatorServer, warehouse: Warehouse
) -> None:
    run_sync_job(scope=LIVE_VOICE)
    run_sync_job(scope=Scope("live", "chat"))
    run_sync_job(scope=LIVE_VOICE)
    stored = warehouse.read_table("conversations").groupby("channel").size().to_dict()
    truth = {
        channel: sum(
            1
            for _ in simulator.dataset.conversations_in("live", [channel], WINDOW.start, WINDOW.end)
        )
        for channel in ("voice", "chat")
    }
    assert stored == truth


def test_a_range_records_each_window_once_with_its_own_metadata_and_a_failed_window_keeps_those_before_it(  # noqa: E501
    sync_job, simulator: SimulatorServer, monkeypatch
) -> None:
    job = sync_job
    days = [SYNC_DAY - timedelta(days=2), SYNC_DAY - timedelta(days=1), SYNC_DAY]
    keys = [str(partition_key(day, LIVE_VOICE)) for day in days]
    tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
    served = {
        key: sum(1 for _ in simulator.dataset.conversations_in("live", ["voice"], w.start, w.end))
        for key, w in zip(keys, (daily_window(day) for day in days), strict=True)
    }
    with DagsterInstance.ephemeral() as instance:
        landed = job.execute_in_process(instance=instance, tags=tags)
        assert landed.success
        recorded = landed.asset_materializations_for_node(SYNC_STEP)
        # Each table once per window, each carrying its own window's row count.
        assert sorted((m.asset_key.path[-1], m.partition) for m in recorded) == sorted(
            (table, key) for table in ("conversations", "turns", "turn_latency", "turn_genai")
            for key in keys
        )  # fmt: skip
        counts = {
            m.partition: m.metadata["dagster/row_count"].value
            for m in recorded
            if m.asset_key == CONVERSATIONS
        }
        assert counts == served and len(set(served.values())) > 1

        # The middle window fails (an injected fault; the others sync for real).
        finish = window_sync._finish

        def failing_on_the_middle_day(polyai, warehouse, feed, fetch, *args):
            if fetch.key.window.start.date() == days[1]:
                raise RuntimeError("injected fault")
            return finish(polyai, warehouse, feed, fetch, *args)

        monkeypatch.setattr(window_sync, "_finish", failing_on_the_middle_day)
        failed = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        assert not failed.success
        recorded = failed.asset_materializations_for_node(SYNC_STEP)
        assert {m.partition for m in recorded} == {keys[0]} and len(recorded) == 4
        (failure,) = [e for e in failed.all_events if e.is_step_failure]
        assert failure.step_key == SYNC_STEP
        assert failure.step_failure_data.user_failure_data.description.startswith(keys[1])
        # Nothing downstream ran on the failed step's windows.
        assert not failed.asset_materializations_for_node("polyai_dbt")
