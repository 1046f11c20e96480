"""A project whose transcript access is off: conversations come with ``turns: []`` and their
``num_turns``. The window loads through the Dagster sync job, its checks warn naming the cause,
and the KPIs that need turns are null rather than 0 (published behaviour, ../shared/API.md)."""

from typing import Any

import pandas as pd
import pytest

from core import api_contract as api
from core.windows import daily_window
from resources.warehouse import Warehouse
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY

WINDOW = daily_window(SYNC_DAY)
TURN_KPIS = ("turns_per_conversation", "silence_rate", "ood_rate")


def kpis(warehouse: Warehouse) -> list[dict[str, Any]]:
    return warehouse.read_table("conversation_kpis").to_dict("records")


def evaluations(result: Any) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_window_with_transcripts_hidden_loads_warns_and_leaves_turn_kpis_null(
    simulator: SimulatorServer,
    warehouse: Warehouse,
    run_sync_job: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # First with transcripts visible: the turn KPIs have values, every check passes.
    shown = run_sync_job(dbt=True)
    assert evaluations(shown) and all(e.passed for e in evaluations(shown).values())
    assert kpis(warehouse)
    assert all(row[k] > 0 for row in kpis(warehouse) for k in ("turns_per_conversation",))
    assert not any(pd.isna(row[k]) for row in kpis(warehouse) for k in TURN_KPIS)
    assert len(warehouse.read_table("turns")) > 0

    # Then the project's "Conversation transcript" setting is off: the same window again.
    monkeypatch.setenv("POLYAI_PROJECT_ID", simulator.config.transcripts_hidden_project)
    hidden = run_sync_job(dbt=True)

    conversations = warehouse.read_table("conversations")
    finished_with_turns = conversations[(conversations.num_turns > 0) & ~conversations.in_progress]
    assert len(finished_with_turns) > 0 and len(warehouse.read_table("turns")) == 0
    checks = evaluations(hidden)
    warning = checks["transcripts_visible"]
    assert not warning.passed and warning.severity.value == "WARN"
    assert warning.metadata["violations"].value == len(finished_with_turns)
    assert api.TRANSCRIPTS_HIDDEN_CAUSE in warning.description
    # Nothing else is wrong with the window: num_turns is not held against its empty turns.
    assert {name for name, e in checks.items() if not e.passed} == {"transcripts_visible"}
    rows = kpis(warehouse)
    assert sum(row["conversations"] for row in rows) == len(conversations)
    assert all(pd.isna(row[k]) for row in rows for k in TURN_KPIS)  # null, not 0
    assert warehouse.read_table("latency_kpis").empty  # turn latency came with no turn
