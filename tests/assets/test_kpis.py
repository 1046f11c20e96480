"""KPI tables checked against values computed here, in Python, from the simulator's raw
conversations (not by running the same SQL again)."""

import json
from collections import Counter, defaultdict
from datetime import timedelta

import numpy as np
import pytest

from core.windows import Scope, daily_window
from resources.warehouse import Warehouse
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY

LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)


def raw(simulator: SimulatorServer) -> list[dict]:
    return list(
        simulator.dataset.conversations_in(
            "live", ["voice"], WINDOW.start, WINDOW.end, latency=True, metadata=True
        )
    )


def model_and_counts(metadata: dict) -> tuple[str, int | None, int | None, int | None, int]:
    """A turn's (model, input tokens, output tokens, time to first token, tool calls), read
    from the simulator's camelCase metadata the way docs/data-model.md says they are."""
    requests = metadata.get("llmRequests", [])
    first = requests[0] if requests else {}

    def total(key: str) -> int | None:
        return sum(r[key] for r in requests) if requests else None

    return (
        first.get("model", ""),
        total("inputTokens"),
        total("outputTokens"),
        first.get("timeToFirstTokenMs"),
        len(metadata.get("functionEvents", [])),
    )


def test_conversation_kpis_match_an_independent_computation(
    run_sync_job, simulator: SimulatorServer, warehouse: Warehouse
) -> None:
    run_sync_job(dbt=True)
    stored = warehouse.read_table("conversation_kpis").set_index("variant_id")
    by_variant = defaultdict(list)
    for conversation in raw(simulator):
        by_variant[conversation["variant_id"]].append(conversation)
    assert set(stored.index) == set(by_variant)
    for variant, group in by_variant.items():
        row = stored.loc[variant]
        finished = [c for c in group if not c["in_progress"]]
        turns = [t for c in group for t in c["turns"]]
        durations = [c["total_duration"] for c in group]
        handoffs = [c for c in group if c["handoff"]]
        assert row["conversations"] == len(group)
        assert row["finished"] == len(finished)
        assert row["in_progress"] == len(group) - len(finished)
        assert row["handoffs"] == len(handoffs)
        contained = sum(1 for c in finished if not c["handoff"])
        assert row["containment_rate"] == pytest.approx(contained / len(finished))
        assert json.loads(row["handoffs_by_reason"]) == Counter(
            c["handoff_reason"] for c in handoffs
        )
        assert json.loads(row["handoffs_by_destination"]) == Counter(
            c["handoff_destination"] for c in handoffs
        )
        assert row["mean_duration_s"] == pytest.approx(np.mean(durations))
        assert row["p50_duration_s"] == pytest.approx(np.percentile(durations, 50))
        assert row["p95_duration_s"] == pytest.approx(np.percentile(durations, 95))
        assert row["turns_per_conversation"] == pytest.approx(len(turns) / len(group))
        assert row["silence_rate"] == pytest.approx(
            sum(t["is_silence"] for t in turns) / len(turns)
        )
        assert row["ood_rate"] == pytest.approx(sum(t["is_ood"] for t in turns) / len(turns))


@pytest.mark.latency_breakdown  # the stage rows too
def test_latency_and_genai_kpis_match_an_independent_computation(
    run_sync_job, simulator: SimulatorServer, warehouse: Warehouse
) -> None:
    run_sync_job(dbt=True)
    conversations = raw(simulator)
    samples = defaultdict(list)
    for conversation in conversations:
        for turn in conversation["turns"]:
            samples["overall"].append(turn["latency"] * 1000)  # seconds, as ms
        for entry in conversation["latency"]["turns"]:
            for stage, ms in entry["stages"].items():
                samples[stage].append(ms)
    latency = warehouse.read_table("latency_kpis").set_index("stage")
    assert set(latency.index) == set(samples)
    for stage, values in samples.items():
        assert latency.loc[stage, "turns"] == len(values)
        for q in (50, 90, 95, 99):
            assert latency.loc[stage, f"p{q}_ms"] == pytest.approx(np.percentile(values, q))

    by_model = defaultdict(list)
    for conversation in conversations:
        for turn in conversation["turns"]:
            counts = model_and_counts(turn["metadata"])
            by_model[counts[0]].append(counts)
    genai = warehouse.read_table("genai_kpis").set_index("model")
    assert set(genai.index) == set(by_model) and len(by_model) > 2
    for model, metas in by_model.items():
        row = genai.loc[model]
        assert row["turns"] == len(metas)
        assert row["input_tokens"] == sum(m[1] or 0 for m in metas)
        assert row["output_tokens"] == sum(m[2] or 0 for m in metas)
        ttft = [m[3] for m in metas if m[3] is not None]
        assert bool(ttft) == (model != "")  # every request of the simulator's gives one
        if ttft:
            assert row["p50_time_to_first_token_ms"] == pytest.approx(np.percentile(ttft, 50))
            assert row["p95_time_to_first_token_ms"] == pytest.approx(np.percentile(ttft, 95))
        assert row["tool_calls"] == sum(m[4] for m in metas)


@pytest.mark.e2e  # three Dagster runs, each starting dbt (about 8 s a run)
def test_a_resync_recomputes_only_the_windows_it_touched(
    run_sync_job, warehouse: Warehouse
) -> None:
    other_day = SYNC_DAY - timedelta(days=1)
    run_sync_job(SYNC_DAY, dbt=True)
    run_sync_job(other_day, dbt=True)
    before = warehouse.read_table("conversation_kpis").groupby("conversation_date")
    stamps = before["computed_at"].max().to_dict()
    run_sync_job(SYNC_DAY, dbt=True)
    after = warehouse.read_table("conversation_kpis").groupby("conversation_date")
    stamps_after = after["computed_at"].max().to_dict()
    assert stamps_after[other_day] == stamps[other_day]
    assert stamps_after[SYNC_DAY] > stamps[SYNC_DAY]
    assert after.size().to_dict() == before.size().to_dict()  # replaced, not duplicated
