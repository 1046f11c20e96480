"""Crashes and interrupts of ``polyai-sync sync`` as people meet them: the real command, a
real Dagster instance (SQLite, and PostgreSQL where noted), the simulator over HTTP and a
DuckDB file. A crash never blocks the next sync; Ctrl-C and SIGTERM stop it within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from core.names import POOL
from core.windows import daily_window
from devtools import postgres
from simulator import SimulatorServer
from tests.assets.warehouse_reads import table_contents
from tests.conftest import SYNC_DAY, Serve
from tests.pipelines.cli_runs import CLI, run_cli, source_env

pytestmark = pytest.mark.e2e

PAGE_SIZE = "40"
DAY = str(SYNC_DAY)


def sync_env(server: SimulatorServer, tmp_path: Path, name: str = "wh") -> dict[str, str]:
    env = source_env(server, tmp_path)
    env.update(
        POLYAI_PAGE_SIZE=PAGE_SIZE,
        WAREHOUSE_URL=f"duckdb:///{tmp_path / name}.duckdb",
        LAKE_URL=str(tmp_path / f"{name}-lake"),
        POLYAI_QA_SAMPLE_SIZE="0",
    )
    return env


def start_sync(env: dict[str, str], channel: str = "voice") -> subprocess.Popen:
    """The command in a process group of its own, as a shell job is."""
    return subprocess.Popen(
        [CLI, "sync", "--start", DAY, "--end", DAY, "--channel", channel],
        env=env,
        cwd=Path(env["DAGSTER_HOME"]).parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_pages(server: SimulatorServer, pages: int, process: subprocess.Popen) -> None:
    """Until the sync has fetched ``pages`` pages of a window and asked for the next: watched
    at the API, as a reader of the DuckDB file waits for the sync to let it go (up to 5 s)."""
    deadline = time.monotonic() + 90
    while len(window_pages(server)) <= pages:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the sync never reached the kill point"
        time.sleep(0.05)


def window_pages(server: SimulatorServer) -> list[str]:
    """The cursor of every window request the simulator received ('' for a first page)."""
    return [
        parse_qs(urlsplit(path).query).get("cursor", [""])[0]
        for path in server.recent_paths
        if "sample=" not in path and "query_type=" not in path
    ]


@contextmanager
def instance_of(env: dict[str, str]) -> Iterator[DagsterInstance]:
    """The command's instance, read with the command's environment (DAGSTER_PG_*)."""
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_")})
    try:
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            yield instance
    finally:
        os.environ.clear()
        os.environ.update(saved)


def assert_nothing_left_running(env: dict[str, str]) -> None:
    with instance_of(env) as instance:
        statuses = [run.status for run in instance.get_runs()]
        assert DagsterRunStatus.STARTED not in statuses, statuses
        assert DagsterRunStatus.STARTING not in statuses, statuses
        if instance.event_log_storage.supports_global_concurrency_limits:
            assert instance.event_log_storage.get_concurrency_info(POOL).claimed_slots == []


@pytest.fixture(params=["sqlite", "postgresql"])
def instance_storage(request: pytest.FixtureRequest, tmp_path: Path):
    """Makes a DAGSTER_HOME of the given storage: the project's SQLite default, or the
    production file (deploy/dagster.yaml) on a PostgreSQL database."""

    def prepare(env: dict[str, str]) -> dict[str, str]:
        if request.param == "sqlite":
            return env
        database = urlsplit(postgres.new_database(request.getfixturevalue("postgres_server")))
        home = Path(env["DAGSTER_HOME"])
        home.mkdir(parents=True)
        config = (Path(__file__).parents[2] / "deploy" / "dagster.yaml").read_text()
        (home / "dagster.yaml").write_text(config.replace("default_limit: 4", "default_limit: 1"))
        return {
            **env,
            "DAGSTER_PG_USERNAME": database.username or "postgres",
            "DAGSTER_PG_PASSWORD": database.password or "",
            "DAGSTER_PG_HOST": database.hostname or "127.0.0.1",
            "DAGSTER_PG_PORT": str(database.port or 5432),
            "DAGSTER_PG_DB": database.path.lstrip("/"),
        }

    return prepare


def test_a_sync_killed_with_its_process_group_is_resumed_by_the_same_command(
    serve: Serve, tmp_path: Path, instance_storage
) -> None:
    reference = serve(faults={"latency_ms": 0})
    baseline_env = sync_env(reference, tmp_path, "baseline")
    baseline_env["DAGSTER_HOME"] = str(tmp_path / "baseline_home")
    done = run_cli("sync", "--start", DAY, "--end", DAY, "--channel", "voice", env=baseline_env)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = table_contents(baseline_env["WAREHOUSE_URL"])

    server = serve(faults={"latency_ms": 250})  # slow pages: room to kill between commits
    env = instance_storage(sync_env(server, tmp_path))
    first = start_sync(env)
    wait_for_pages(server, 2, first)
    os.killpg(first.pid, signal.SIGKILL)  # the whole group, as an OOM kill or a reboot would
    first.wait()

    started = time.monotonic()
    again = run_cli("sync", "--start", DAY, "--end", DAY, "--channel", "voice", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert time.monotonic() - started < 90
    assert "had lost its process" in again.stdout
    assert "[1/1] 2026-11-20 live.voice" in again.stdout
    assert table_contents(env["WAREHOUSE_URL"]) == expected
    pages = window_pages(server)
    # at most two pages, once: the one being staged and the one being fetched (sync/feed.py)
    assert len(pages) - len(set(pages)) <= 2
    assert_nothing_left_running(env)
    with instance_of(env) as instance:
        assert sorted(run.status.value for run in instance.get_runs()) == ["FAILURE", "SUCCESS"]
        # The killed command's backfill is failed too: a daemon started later won't rerun it.
        statuses = sorted(b.status.value for b in instance.get_backfills())
        assert statuses == ["COMPLETED_SUCCESS", "FAILED"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_a_sync_within_seconds_and_the_next_resumes(
    serve: Serve, tmp_path: Path, signum: signal.Signals
) -> None:
    server = serve(faults={"latency_ms": 250})
    env = sync_env(server, tmp_path)
    sync = start_sync(env)
    wait_for_pages(server, 1, sync)
    # Ctrl-C reaches the terminal's whole process group; SIGTERM (kill, systemd) the process.
    if signum == signal.SIGINT:
        os.killpg(sync.pid, signum)
    else:
        sync.send_signal(signum)
    sent = time.monotonic()
    out, err = sync.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert sync.returncode == 130, out + err
    assert "interrupted" in out + err
    assert "Traceback" not in out + err
    assert_nothing_left_running(env)

    resumed = run_cli("sync", "--start", DAY, "--end", DAY, "--channel", "voice", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert stored_by_channel(env) == truth(server, ("voice",))


def stored_by_channel(env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """(conversations, distinct ids) per channel in the DuckDB file."""
    path = env["WAREHOUSE_URL"].removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as con:
        rows = con.execute(
            "SELECT channel, count(*), count(DISTINCT id) FROM polyai.conversations GROUP BY 1"
        ).fetchall()
    return {channel: (n, distinct) for channel, n, distinct in rows}


def truth(server: SimulatorServer, channels: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    window = daily_window(SYNC_DAY)
    counts = {
        channel: sum(
            1 for _ in server.dataset.conversations_in("live", [channel], window.start, window.end)
        )
        for channel in channels
    }
    return {channel: (n, n) for channel, n in counts.items()}


def test_two_syncs_at_once_on_one_sqlite_instance_both_finish_the_second_waiting_idle(
    serve: Serve, tmp_path: Path
) -> None:
    server = serve(faults={"latency_ms": 300})
    env = {**sync_env(server, tmp_path), "POLYAI_PAGE_SIZE": "10"}  # ~10 s for the first
    first = start_sync(env, "voice")
    wait_for_pages(server, 1, first)  # it holds the pool's one slot now
    second = start_sync(env, "chat")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(second.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("Waiting for the 'polyai_sync' pool" in line for line in lines):
        assert second.poll() is None and first.poll() is None, (lines, first.communicate())
        assert time.monotonic() < deadline, lines
        time.sleep(0.1)
    waiting = next(line for line in lines if "Waiting for" in line)
    assert "held by run" in waiting  # says who holds it
    # While it waits it sleeps: less than a tenth of a core over 3 s (it spun at ~90% before).
    process = psutil.Process(second.pid)
    before = sum(process.cpu_times()[:2])
    time.sleep(3)
    if first.poll() is None:
        assert sum(process.cpu_times()[:2]) - before < 0.3
    assert first.wait(timeout=120) == 0, first.communicate()
    assert second.wait(timeout=120) == 0, (lines, second.stderr.read())
    reader.join(timeout=10)
    assert any("[1/1] 2026-11-20 live.chat" in line for line in lines)
    assert stored_by_channel(env) == truth(server, ("voice", "chat"))
    assert_nothing_left_running(env)


def test_a_run_marked_canceling_from_the_ui_stops_the_command_running_it(
    serve: Serve, tmp_path: Path
) -> None:
    """Terminate in the UI first marks the run CANCELING (then asks the run's launcher, which
    cannot reach a run inside a CLI process); the command sees the mark and stops."""
    server = serve(faults={"latency_ms": 250})
    env = sync_env(server, tmp_path)
    sync = start_sync(env)
    wait_for_pages(server, 1, sync)
    with instance_of(env) as instance:
        (run,) = instance.get_runs()
        instance.report_run_canceling(run)
    marked = time.monotonic()
    out, err = sync.communicate(timeout=30)
    assert time.monotonic() - marked < 10
    assert sync.returncode == 130, out + err
    assert_nothing_left_running(env)


def test_an_interrupt_while_the_pool_closes_a_connection_is_not_printed_as_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM landed while SQLAlchemy's pool closed an instance connection (seen once in CI):
    the pool logs the interrupt as an error with its traceback, then re-raises it."""
    import logging

    from dagster import DagsterExecutionInterruptedError

    from pipelines.sync_command import _interrupts_not_logged_as_errors

    pool = logging.getLogger("sqlalchemy.pool.impl.QueuePool")
    with _interrupts_not_logged_as_errors():
        for error in (DagsterExecutionInterruptedError(), KeyboardInterrupt(), OSError("disk")):
            try:
                raise error
            except BaseException:
                pool.error("Exception closing connection %r", "<connection>", exc_info=True)
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1 and "OSError: disk" in err
    assert "Interrupted" not in err and "KeyboardInterrupt" not in err
