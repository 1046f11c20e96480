"""A production-shaped deployment, for real: the documented ``deploy/dagster.yaml`` (instance
storage in PostgreSQL, the queued run coordinator, pool and run limits), the real
``dagster-daemon`` launching each run in a process of its own, and a backfill submitted with
``dagster job backfill``; the warehouse is PostgreSQL too. Several windows run at once, and
every window lands exactly once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from assets.keys import CONVERSATIONS
from core.windows import Scope, daily_window
from devtools import postgres
from pipelines.partitions import partition_key
from resources.warehouse import warehouse_for
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY, Serve
from tests.pipelines.cli_runs import clean_env
from tests.pipelines.dagster_ui import stop_group

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = [SYNC_DAY - timedelta(days=n) for n in range(3)]
SCOPES = [Scope("live", "voice"), Scope("live", "chat")]
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def instance_env(server: SimulatorServer, tmp_path: Path, dagster_db: str, warehouse: str) -> dict:
    storage = urlsplit(dagster_db)
    return clean_env(
        **server.source_variables(),
        POLYAI_SYNC_START="2026-11-01",
        WAREHOUSE_URL=warehouse,
        LAKE_URL=str(tmp_path / "lake"),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        POLYAI_PAGE_SIZE="25",
        DAGSTER_PG_USERNAME=storage.username or "postgres",
        DAGSTER_PG_PASSWORD=storage.password or "",
        DAGSTER_PG_HOST=storage.hostname or "127.0.0.1",
        DAGSTER_PG_PORT=str(storage.port or 5432),
        DAGSTER_PG_DB=storage.path.lstrip("/"),
    )


def wait_for_runs(instance: DagsterInstance, count: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while True:
        records = instance.get_run_records(RunsFilter(job_name="polyai_sync"))
        if len(records) >= count and all(r.dagster_run.status in TERMINAL for r in records):
            return records
        assert time.monotonic() < deadline, [r.dagster_run.status for r in records]
        time.sleep(1)


def conversations_in(server: SimulatorServer, day: date, scope: Scope) -> int:
    window = daily_window(day)
    found = server.dataset.conversations_in(
        scope.environment, [scope.channel], window.start, window.end
    )
    return sum(1 for _ in found)


def test_a_backfill_through_the_daemon_on_postgresql_runs_windows_at_once_and_lands_each_once(
    serve: Serve, postgres_server: str, tmp_path: Path
) -> None:
    # Pages slow enough that a run lasts longer than the queue's dequeue interval, so runs
    # overlap (with every step in the run's own process a run takes about a second).
    server = serve(conversations_per_day=150, faults={"latency_ms": 400})
    env = instance_env(
        server,
        tmp_path,
        postgres.new_database(postgres_server, "dagster"),
        postgres.new_database(postgres_server, "warehouse"),
    )
    home = Path(env["DAGSTER_HOME"])
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    keys = [str(partition_key(day, scope)) for day in DAYS for scope in SCOPES]

    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        submitted = subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-w", str(ROOT / "workspace.yaml"),
             "-j", "polyai_sync", "--partitions", ",".join(keys), "--noprompt"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr

        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                if name.startswith("DAGSTER_PG_"):
                    patch.setenv(name, value)
            with DagsterInstance.from_config(str(home)) as instance:
                records = wait_for_runs(instance, len(keys), timeout=420)
                statuses = [r.dagster_run.status for r in records]
                assert statuses == [DagsterRunStatus.SUCCESS] * len(keys), (
                    statuses,
                    (tmp_path / "daemon.log").read_text()[-3000:],
                )
                # Several windows ran at once: the most runs in progress at one moment.
                spans = [(r.start_time, r.end_time) for r in records]
                peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
                assert peak >= 2, spans
                # Each window was materialized once, by one run.
                events = instance.fetch_materializations(CONVERSATIONS, limit=1000).records
                partitions = sorted(event.partition_key for event in events)
                assert partitions == sorted(keys)
    finally:
        stop_group(daemon)
        log.close()

    warehouse = warehouse_for(env["WAREHOUSE_URL"])
    with warehouse.connect(read_only=True) as con:
        per_window = dict(
            ((env_, channel, day), (rows, distinct))
            for env_, channel, day, rows, distinct in con.execute(
                "SELECT environment, channel, conversation_date, count(*), count(DISTINCT id) "
                "FROM polyai.conversations GROUP BY environment, channel, conversation_date"
            ).fetchall()
        )
        states = con.execute(
            "SELECT status, count(*) FROM polyai.sync_state GROUP BY status"
        ).fetchall()
    expected = {
        (s.environment, s.channel, day): (conversations_in(server, day, s),) * 2
        for day in DAYS
        for s in SCOPES
    }
    assert per_window == expected  # every window, every conversation, none twice
    assert states == [("complete", len(keys))]
