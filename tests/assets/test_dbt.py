"""The dbt project on both engines: built by hand through ``polyai-sync dbt`` (the real CLI),
its tests passing and its marts agreeing with counts taken here from the simulator's data; a
build of some windows rebuilds exactly those (and empties a window that has nothing left);
the manifest is parsed again when, and only when, the project changes."""

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.windows import Scope, daily_window
from resources import dbt
from resources.polyai_api import PolyAIClient
from resources.warehouse import Warehouse
from simulator import SimulatorServer
from sync.window import sync_windows
from tests.conftest import SYNC_DAY
from tests.pipelines.cli_runs import clean_env, run_cli

LIVE_VOICE = Scope("live", "voice")
DAYS = [daily_window(SYNC_DAY), daily_window(SYNC_DAY + timedelta(days=1))]


def _sync(client: PolyAIClient, warehouse: Warehouse) -> None:
    for result in sync_windows(client, warehouse, [(LIVE_VOICE, day) for day in DAYS]):
        assert result.conversations_fetched


def _source(simulator: SimulatorServer) -> list[dict]:
    return [
        record
        for day in DAYS
        for record in simulator.dataset.conversations_in(
            "live", ["voice"], day.start, day.end, latency=True, metadata=True
        )
    ]


@pytest.mark.e2e
def test_dbt_build_by_hand_passes_its_tests_and_its_marts_count_what_the_api_served(
    client: PolyAIClient, simulator: SimulatorServer, warehouse: Warehouse, tmp_path: Path
) -> None:
    _sync(client, warehouse)
    env = clean_env(WAREHOUSE_URL=warehouse.url, DAGSTER_HOME=str(tmp_path / "home"))

    done = run_cli("dbt", "build", env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR=0" in done.stdout and "PASS=" in done.stdout
    source = _source(simulator)
    kpis = warehouse.read_table("conversation_kpis")
    assert sorted({ts.date() for ts in kpis["window_start"]}) == [d.start.date() for d in DAYS]
    assert kpis["conversations"].sum() == len(source)
    handoffs = warehouse.read_table("handoff_analysis")
    assert handoffs["handoffs"].sum() == sum(bool(r["handoff"]) for r in source)
    by_reason = handoffs.groupby("handoff_reason")["handoffs"].sum().to_dict()
    expected: dict[str, int] = {}
    for record in source:
        if record["handoff"]:
            reason = record.get("handoff_reason") or ""
            expected[reason] = expected.get(reason, 0) + 1
    assert by_reason == expected
    agent = warehouse.read_table("agent_turns")
    assert agent["turns"].sum() == sum(len(r["turns"]) for r in source)


def test_a_build_of_some_windows_rebuilds_exactly_those(
    client: PolyAIClient, warehouse: Warehouse
) -> None:
    _sync(client, warehouse)
    dbt.rebuild_kpis(warehouse, [(LIVE_VOICE, day) for day in DAYS])
    before = warehouse.read_table("conversation_kpis").set_index(["window_start", "variant_id"])
    time.sleep(0.01)  # computed_at then tells a row written again from one kept

    dbt.rebuild_kpis(warehouse, [(LIVE_VOICE, DAYS[0])])

    after = warehouse.read_table("conversation_kpis").set_index(["window_start", "variant_id"])
    assert sorted(after.index) == sorted(before.index)
    rebuilt = after["computed_at"] != before.loc[after.index, "computed_at"]
    first = [ts == DAYS[0].start for ts, _ in after.index]
    assert list(rebuilt) == first  # the first day's rows, and only those
    assert _values(after) == _values(before.loc[after.index])


def _values(kpis: pd.DataFrame) -> list[dict]:
    """The rows but ``computed_at``, JSON objects parsed (their keys come in no set order)."""
    rows = kpis.drop(columns="computed_at").to_dict("records")
    for row in rows:
        for name in ("handoffs_by_reason", "handoffs_by_destination"):
            row[name] = json.loads(row[name])
    return rows


def test_a_window_left_empty_loses_its_kpi_rows_and_keeps_the_others(
    client: PolyAIClient, warehouse: Warehouse
) -> None:
    _sync(client, warehouse)
    dbt.rebuild_kpis(warehouse, [(LIVE_VOICE, day) for day in DAYS])
    with warehouse.connect() as con:  # as an erasure of everyone that day would leave it
        for table in ("turn_genai", "turn_latency", "turns"):
            con.execute(
                f"DELETE FROM {table} WHERE conversation_id IN (SELECT id FROM conversations "
                "WHERE window_start = $start)",
                {"start": DAYS[0].start},
            )
        con.execute(
            "DELETE FROM conversations WHERE window_start = $start", {"start": DAYS[0].start}
        )

    dbt.rebuild_kpis(warehouse, [(LIVE_VOICE, DAYS[0])])

    for table in ("conversation_kpis", "latency_kpis", "genai_kpis"):
        starts = set(warehouse.read_table(table)["window_start"])
        assert starts == {DAYS[1].start}, table


@pytest.mark.e2e
def test_the_manifest_is_parsed_again_when_the_project_changes_and_only_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "dbt_project"
    shutil.copytree(dbt.PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setattr(dbt, "PROJECT_DIR", project)
    monkeypatch.setattr(dbt, "TARGET_DIR", project / "target")
    monkeypatch.setattr(dbt, "MANIFEST", project / "target" / "manifest.json")
    monkeypatch.setattr(dbt, "_PARSED_FROM", project / "target" / "polyai-sync.parsed-from")

    first = dbt.manifest()
    parsed_at = first.stat().st_mtime_ns
    assert dbt.manifest().stat().st_mtime_ns == parsed_at  # unchanged: not parsed again
    (project / "models" / "marts" / "extra_mart.sql").write_text(
        "select 1 as one from {{ ref('stg_conversations') }}\n"
    )

    again = dbt.manifest()

    assert again.stat().st_mtime_ns != parsed_at
    assert "model.polyai_sync.extra_mart" in again.read_text()


def test_a_duckdb_file_named_as_its_schema_is_refused_naming_the_settings(tmp_path: Path) -> None:
    """DuckDB 2.0 will not bind a view in ``polyai.duckdb`` reading schema ``polyai``: said
    before dbt starts, with the ways out, instead of dbt's binder error on every view."""
    from resources.warehouse.duckdb_engine import DuckDBWarehouse

    named_as_schema = DuckDBWarehouse(url=f"duckdb:///{tmp_path / 'polyai.duckdb'}")
    with pytest.raises(dbt.DbtBuildError) as refused:
        dbt.profile_env(named_as_schema)
    for words in ("polyai.duckdb", "WAREHOUSE_SCHEMA", "POLYAI_DBT_MODELS=false"):
        assert words in str(refused.value)
    other = DuckDBWarehouse(url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    assert dbt.profile_env(other)["POLYAI_DBT_SCHEMA"] == "polyai"
