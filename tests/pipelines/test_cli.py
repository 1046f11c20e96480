"""The command line, as a user runs it: real processes, the simulator on loopback, real files."""

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance

from assets.keys import CONVERSATIONS, TURNS
from core.names import FRESHNESS_CHECK, SYNC_STEP, WINDOW_CHECKS
from core.windows import daily_window
from pipelines.cli import main
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY, free_port
from tests.pipelines.cli_runs import CLI, clean_env, run_cli, source_env

pytestmark = pytest.mark.e2e

SOURCE_VARIABLES = ("POLYAI_BASE_URL", "POLYAI_API_KEY", "POLYAI_ACCOUNT_ID", "POLYAI_PROJECT_ID")


def test_sync_without_source_configuration_fails_at_once_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in SOURCE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POLYAI_BASE_URL", "http://127.0.0.1:9")
    assert main(["sync", "--start", "2026-11-01", "--end", "2026-11-01"]) == 2
    err = capsys.readouterr().err
    assert "POLYAI_API_KEY" in err and "POLYAI_ACCOUNT_ID" in err and "POLYAI_PROJECT_ID" in err
    assert "POLYAI_REGION" not in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-11-21", "--end", "2026-11-20"], "--start 2026-11-21 is after --end"),
        (["--start", "20/11/2026", "--end", "2026-11-20"], "--start: '20/11/2026' is not a date"),
        (["--start", "2024-12-31", "--end", "2025-01-01"], "before POLYAI_SYNC_START"),
        (["--start", "2026-11-20", "--end", "2999-01-01"], "not a complete UTC day"),
        (["--start", "2026-11-20", "--end", "2026-11-20", "--environment", "sandbox"], "sandbox"),
        (["--start", "2026-11-20", "--end", "2026-11-20", "--channel", "sms"], "--channel sms"),
    ],
)
def test_sync_rejects_bad_arguments_with_a_clear_message(
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in SOURCE_VARIABLES:
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("POLYAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("POLYAI_SYNC_START", raising=False)
    monkeypatch.delenv("POLYAI_ENVIRONMENTS", raising=False)
    monkeypatch.delenv("POLYAI_CHANNELS", raising=False)
    assert main(["sync", *args]) == 2
    assert message in capsys.readouterr().err


def test_sync_materializes_each_partition_into_the_configured_instance(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    env = source_env(simulator, tmp_path)
    start, end = SYNC_DAY - timedelta(days=1), SYNC_DAY
    done = run_cli("sync", "--start", str(start), "--end", str(end), "--channel", "voice", env=env)
    assert done.returncode == 0, done.stderr
    assert "[2/2] 2026-11-20 live.voice" in done.stdout
    assert env["POLYAI_API_KEY"] not in done.stdout + done.stderr

    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        # Both windows of the scope went in one run (the backfill policy's grouping).
        (run,) = instance.get_runs()
        assert run.tags["dagster/asset_partition_range_start"] == "2026-11-19|live.voice"
        assert run.tags["dagster/asset_partition_range_end"] == "2026-11-20|live.voice"
        for key in (CONVERSATIONS, TURNS):
            assert instance.get_materialized_partitions(key) == {
                "2026-11-19|live.voice",
                "2026-11-20|live.voice",
            }
        # It ran the window checks and what is computed from the tables, each a step of its
        # own after the sync step; the scope freshness check is not part of a sync run.
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        steps = {step.key for step in plan.steps}
        assert {SYNC_STEP, WINDOW_CHECKS, "lake"} <= steps  # (dbt's step: the demo's test)
        assert not any(FRESHNESS_CHECK in step for step in steps), steps

    truth = sum(
        1
        for day in (start, end)
        for _ in simulator.dataset.conversations_in(
            "live", ["voice"], daily_window(day).start, daily_window(day).end
        )
    )
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        stored = con.execute("SELECT count(*), count(DISTINCT id) FROM polyai.conversations")
        assert stored.fetchone() == (truth, truth)


def test_sync_reports_a_failed_partition_and_exits_non_zero(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    env = source_env(simulator, tmp_path)
    env["POLYAI_API_KEY"] = "sk-wrong-key-123"
    done = run_cli(
        "sync", "--start", str(SYNC_DAY), "--end", str(SYNC_DAY), "--channel", "chat", env=env
    )
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "HTTP 403" in done.stdout
    assert "sk-wrong-key-123" not in done.stdout + done.stderr


def test_demo_needs_no_configuration_and_matches_the_simulator(tmp_path: Path) -> None:
    done = run_cli("demo", env=clean_env(POLYAI_DBT_MODELS="1"), cwd=tmp_path)  # as a user
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uv run polyai-sync ui --demo" in done.stdout

    warehouse = tmp_path / ".polyai-sync" / "demo" / "warehouse.duckdb"
    assert (tmp_path / ".polyai-sync" / "demo" / "dagster_home").is_dir()
    last = datetime.now(UTC).date() - timedelta(days=1)
    days = [last - timedelta(days=n) for n in (2, 1, 0)]
    from simulator import Dataset, SimulatorConfig

    dataset = Dataset(SimulatorConfig())
    truth = sum(
        dataset.volume("live", channel, day) for day in days for channel in ("voice", "chat")
    )
    with duckdb.connect(str(warehouse), read_only=True) as con:
        conversations, num_turns = con.execute(
            "SELECT count(*), sum(num_turns) FROM polyai.conversations"
        ).fetchone()
        (turns,) = con.execute("SELECT count(*) FROM polyai.turns").fetchone()
        # dbt built the models: the marts count the same turns.
        (agent_turns,) = con.execute("SELECT sum(turns) FROM polyai.agent_turns").fetchone()
    assert conversations == truth
    assert agent_turns == turns
    assert turns == num_turns
    # The demo's own table: warehouse rows beside the simulator's, equal.
    assert re.search(rf"conversations\s+{conversations}\s+{conversations}\n", done.stdout)
    assert re.search(rf"turns\s+{turns}\s+{turns}\n", done.stdout)
    # Then a KPI line per day and scope, whose conversations add up to the same total.
    kpi_lines = re.findall(r"^  \d{4}-\d\d-\d\d live\.(?:voice|chat)\s+(\d+)\s", done.stdout, re.M)
    assert len(kpi_lines) == 6
    assert sum(map(int, kpi_lines)) == conversations


def test_simulator_command_serves_the_api_with_the_chosen_key(tmp_path: Path) -> None:
    from core.windows import Scope
    from resources.polyai_api import PolyAIClient, PolyAIHTTPError

    port = free_port()
    server = subprocess.Popen(
        [CLI, "simulator", "--port", str(port), "--api-key", "k-123"],
        env=clean_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        banner = server.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner
        client = PolyAIClient(
            base_url=f"http://127.0.0.1:{port}",
            api_key="k-123",
            account_id="demo-account",
            project_id="demo-project",
        )
        pages = list(client.iter_window(Scope("live", "chat"), daily_window(SYNC_DAY)))
        assert sum(len(p.conversations) for p in pages) > 0
        wrong = client.model_copy(update={"api_key": "other"})
        with pytest.raises(PolyAIHTTPError, match="HTTP 403"):
            next(wrong.iter_window(Scope("live", "chat"), daily_window(SYNC_DAY)))
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate-429", "2"], "--rate-429 must be between 0 and 1"),
        (["--rate-429", "0.6", "--rate-5xx", "0.6"], "must not exceed 1"),
        (["--conversations-per-day", "0"], "--conversations-per-day must be at least 1"),
    ],
)
def test_simulator_rejects_bad_options(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulator", *args]) == 2
    assert message in capsys.readouterr().err


def test_two_concurrent_syncs_on_one_duckdb_file_both_succeed(serve, tmp_path: Path) -> None:
    """Two writers on one DuckDB file: the second waits for the file's lock between the
    first's commits, and both land. Each has a Dagster instance of its own: two processes at
    once on one SQLite-backed instance have stalled waiting for a pool slot under load (seen
    twice in CI, never alone; docs/operations.md, Concurrency), which is not what this test
    is about."""
    server = serve(faults={"latency_ms": 100})
    envs = {
        channel: {**source_env(server, tmp_path), "DAGSTER_HOME": str(tmp_path / channel)}
        for channel in ("voice", "chat")
    }
    runs = {
        channel: subprocess.Popen(
            [CLI, "sync", "--start", str(SYNC_DAY), "--end", str(SYNC_DAY), "--channel", channel],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for channel, env in envs.items()
    }
    for run in runs.values():
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, out + err
    for channel, env in envs.items():
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            partitions = instance.get_materialized_partitions(CONVERSATIONS)
            assert sorted(partitions) == [f"{SYNC_DAY}|live.{channel}"]
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        stored = dict(con.execute(
            "SELECT channel, count(*) FROM polyai.conversations GROUP BY channel"
        ).fetchall())  # fmt: skip
    window = daily_window(SYNC_DAY)
    assert stored == {
        channel: sum(1 for _ in server.dataset.conversations_in(
            "live", [channel], window.start, window.end
        ))
        for channel in ("voice", "chat")
    }  # fmt: skip


def test_hourly_windows_sync_a_day_as_24_partitions(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    env = source_env(simulator, tmp_path)
    env["POLYAI_WINDOW"] = "hourly"
    env["POLYAI_WINDOWS_PER_RUN"] = "12"
    done = run_cli(
        "sync", "--start", str(SYNC_DAY), "--end", str(SYNC_DAY), "--channel", "voice", env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[24/24] 2026-11-20-23:00 live.voice" in done.stdout
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert len(instance.get_runs()) == 2  # 24 windows, 12 a run
        hours = instance.get_materialized_partitions(CONVERSATIONS)
        assert hours == {f"{SYNC_DAY}-{h:02d}:00|live.voice" for h in range(24)}
    window = daily_window(SYNC_DAY)
    truth = sum(
        1 for _ in simulator.dataset.conversations_in("live", ["voice"], window.start, window.end)
    )
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        stored = con.execute("SELECT count(*), count(DISTINCT id) FROM polyai.conversations")
        assert stored.fetchone() == (truth, truth)
        (windows,) = con.execute("SELECT count(*) FROM polyai.sync_state").fetchone()
        assert windows == 24
