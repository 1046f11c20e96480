"""The graph tells the truth: a backfill of only the tables, launched through the webserver of
`polyai-sync ui`, brings exactly those windows' KPIs and lake files up to date (the downstream
assets' automation condition, evaluated by the daemon), and no other window's."""

import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from core.windows import Scope, daily_window
from pipelines.partitions import partition_key
from resources.lake import ParquetLake
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY
from tests.pipelines.cli_runs import run_cli, source_env
from tests.pipelines.dagster_ui import (
    BACKFILL,
    FINISHED_BACKFILL,
    graphql,
    polyai_sync_ui,
    wait_for,
)

LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
TABLES = ("conversations", "turns", "turn_latency", "turn_genai")
KPIS = ("conversation_kpis", "latency_kpis", "genai_kpis")
VOICE = Scope("live", "voice")
AUTOMATION_INTERVAL_SECONDS = 5
"""The automation sensor's interval here (30 s by default): what is tested is that it requests
the right windows, not how long it waits."""

pytestmark = pytest.mark.e2e


def test_a_backfill_of_the_tables_alone_brings_their_windows_kpis_and_lake_up_to_date(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    env = {
        **source_env(simulator, tmp_path),
        "POLYAI_DBT_MODELS": "1",  # the KPIs are dbt's
        "LAKE_URL": str(tmp_path / "lake"),
        "POLYAI_AUTOMATION_INTERVAL_SECONDS": str(AUTOMATION_INTERVAL_SECONDS),
    }
    days = [SYNC_DAY - timedelta(days=2), SYNC_DAY - timedelta(days=1), SYNC_DAY]
    synced = run_cli(
        "sync", "--start", str(days[0]), "--end", str(days[-1]), "--channel", "voice", env=env
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    before = _stamps(tmp_path, days)
    backfilled, untouched = days[1:], days[0]

    with polyai_sync_ui(env) as port:
        partitions = [str(partition_key(day, VOICE)) for day in backfilled]

        def launch(tables: tuple[str, ...]) -> dict:
            params = {
                "assetSelection": [{"path": ["polyai", t]} for t in tables],
                "partitionNames": partitions,
            }
            return graphql(port, LAUNCH, params=params)["launchPartitionBackfill"]

        # One API pass writes the four tables: the step cannot be subset, and Dagster says so
        # rather than writing tables it would not record (the UI selects the four itself).
        refused = launch(("conversations",))
        assert refused["__typename"] == "PythonError"
        assert "non-subsettable multi-asset" in refused["message"]

        launched_at = time.time()
        launched = launch(TABLES)
        assert launched["__typename"] == "LaunchBackfillSuccess", launched

        # The backfill's runs write the tables; the daemon's automation sensor then requests
        # the downstream assets of exactly those windows. (The backfill's status is read after:
        # the daemon's backfill loop, every 30 s and not configurable, marks it complete one
        # tick after its runs end, while the downstream runs go on.)
        deadline = time.monotonic() + 300
        while True:
            now = _stamps(tmp_path, days)
            rewritten = [
                day
                for day in backfilled
                if all(
                    now[day][name] > max(before[day][name], launched_at - 1) for name in now[day]
                )
            ]
            if rewritten == backfilled or time.monotonic() > deadline:
                break
            time.sleep(2)
        backfill = wait_for(port, BACKFILL, FINISHED_BACKFILL, 120, id=launched["backfillId"])
    assert backfill["status"] == "COMPLETED_SUCCESS"
    assert rewritten == backfilled, (before, now)
    assert now[untouched] == before[untouched]


def _stamps(tmp_path: Path, days) -> dict:
    """Per day: when each KPI table's rows were computed, and each lake file's mtime (epoch s)."""
    lake = ParquetLake(root=str(tmp_path / "lake"))
    stamps = {}
    for day in days:
        window = daily_window(day)
        stamps[day] = {
            f"lake/{table}": Path(lake.window_file(table, VOICE, window)).stat().st_mtime
            for table in TABLES
        }
        for kpi in KPIS:
            stamps[day][kpi] = _computed_at(tmp_path / "wh.duckdb", kpi, window.start)
    return stamps


def _computed_at(path: Path, table: str, start) -> float:
    deadline = time.monotonic() + 30
    while True:
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                (value,) = con.execute(
                    f"SELECT max(computed_at) FROM polyai.{table} "
                    "WHERE environment = 'live' AND channel = 'voice' AND window_start = ?",
                    [start],
                ).fetchone()
            return value.timestamp()
        except duckdb.IOException:  # a run holds the file: read it when it lets go
            assert time.monotonic() < deadline
            time.sleep(0.5)
