"""Failure alerts, with a real webhook receiver (an HTTP server on loopback recording every POST)
and real runs against the simulator: a failed window alerts once with its window, scope and run
link, a recovery says so, a failed ERROR check alerts, a webhook that is down loses nothing
silently, and the webhook's URL (its path holds a distinctive token) is found nowhere.

The cheaper tests evaluate the sensor the way Dagster's own tests do (``build_sensor_context``
over the instance the runs were recorded in); the last one takes the path people take: the
real CLI records a failed sync, then the real ``dagster-daemon`` evaluates the sensor."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    build_sensor_context,
)

from core.config import Settings
from core.names import ALERT_SENSOR, CHECK_JOB, FRESHNESS_JOB, SYNC_JOB
from core.windows import Scope
from pipelines.alerts import AlertDeliveryError, AlertRefusedError, AlertWebhook
from pipelines.definitions import build_definitions
from pipelines.partitions import partition_key
from resources.warehouse.checks import CHECKS
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY
from tests.pipelines.cli_runs import run_cli, source_env
from tests.pipelines.dagster_ui import stop_group

TOKEN = "hook-SECRET-7c41e9d2"
"""In the webhook's path, as a Slack webhook's key is: searched for everywhere afterwards."""
UI = "http://dagster.example.test:3000"
WRONG_KEY = "sk-wrong-key-alerts"
KEY = str(partition_key(SYNC_DAY, Scope("live", "voice")))


class Receiver:
    """An incoming webhook on 127.0.0.1: records each POST's JSON body, answers ``status``
    (after ``delay`` seconds)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.attempts = 0
        self.status = 200
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                time.sleep(receiver.delay)
                if receiver.status == 200 and self.path == f"/services/{TOKEN}":
                    receiver.posts.append(json.loads(body))
                self.send_response(receiver.status if self.path.endswith(TOKEN) else 404)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:  # quiet: no path on stderr
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/{TOKEN}"

    def texts(self) -> list[str]:
        return [post["text"] for post in self.posts]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


class Alerting:
    """The code location configured for the simulator, a DuckDB warehouse and the receiver;
    runs recorded in one instance, the alert sensor evaluated over it."""

    def __init__(self, defs: Definitions, instance: DagsterInstance) -> None:
        self.defs = defs
        self.instance = instance
        self.cursor: str | None = None
        self.outputs: list[str] = []
        """Every evaluation's skip message and cursor: the sensor's output the UI shows."""

    def run(self, job: str, **kwargs: Any) -> Any:
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, raise_on_error=False, **kwargs
        )

    def evaluate(self) -> Any:
        """One tick, as the daemon's code server evaluates it: the sensor of the repository,
        given the repository's resource (its EnvVar read now), the cursor of the last tick."""
        repository = self.defs.get_repository_def()
        resources = repository.get_top_level_resources()
        with build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            repository_def=repository,
            resources={"alert_webhook": resources["alert_webhook"]},
        ) as context:
            result = repository.get_sensor_def(ALERT_SENSOR).evaluate_tick(context)
        self.cursor = result.cursor
        self.outputs += [str(result.skip_message), str(result.cursor)]
        return result

    def everything_recorded(self) -> str:
        """Every event of every run, and what the sensor said."""
        records = [
            f"{record.user_message} {record.dagster_event!r}"
            for run in self.instance.get_runs()
            for record in self.instance.all_logs(run.run_id)
        ]
        return "\n".join([*records, *self.outputs, repr(self.defs.resources)])


@pytest.fixture
def alerting(
    simulator: SimulatorServer,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Alerting]:
    for name, value in simulator.source_variables().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POLYAI_ALERT_WEBHOOK_URL", receiver.url)  # what the EnvVar reads
    settings = Settings.from_env(
        {
            "POLYAI_SYNC_START": "2026-11-01",
            "WAREHOUSE_URL": f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
            "LAKE_URL": str(tmp_path / "lake"),
            "POLYAI_QA_SAMPLE_SIZE": "0",
            "POLYAI_ALERT_WEBHOOK_URL": receiver.url,
            "DAGSTER_UI_URL": UI,
        }
    )
    # A real instance on disk, as the CLI and the daemon use: SQLite, its event log sharded by
    # run (the run-status events the sensor reads are in its index shard).
    (tmp_path / "dagster_home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster_home")) as instance:
        yield Alerting(build_definitions(settings), instance)


def test_a_failed_window_alerts_once_with_its_window_scope_and_run_link_then_its_recovery(
    alerting: Alerting,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    good_key = os.environ["POLYAI_API_KEY"]  # the simulator's, set by the fixture
    caplog.set_level(logging.DEBUG)  # every logger
    alerting.evaluate()  # the sensor running before the failure: nothing to say yet
    assert receiver.posts == []

    monkeypatch.setenv("POLYAI_API_KEY", WRONG_KEY)
    failed = alerting.run(SYNC_JOB, partition_key=KEY)
    assert not failed.success
    alerting.evaluate()
    (text,) = receiver.texts()
    assert text.splitlines()[0] == "polyai-sync: sync failed for live.voice 2026-11-20"
    assert "Reason: 2026-11-20|live.voice: PolyAI API returned HTTP 403" in text
    assert f"Run: {UI}/runs/{failed.run_id}" in text
    blocks = json.dumps(receiver.posts[0]["blocks"])
    assert f"<{UI}/runs/{failed.run_id}|" in blocks
    for _ in range(2):  # read once: later evaluations say nothing more
        alerting.evaluate()
    assert len(receiver.posts) == 1

    monkeypatch.setenv("POLYAI_API_KEY", good_key)
    landed = alerting.run(SYNC_JOB, partition_key=KEY)
    assert landed.success
    alerting.evaluate()
    alerting.evaluate()
    assert len(receiver.posts) == 2
    recovered = receiver.texts()[1]
    assert recovered.splitlines()[0] == "polyai-sync: sync recovered"
    assert recovered.splitlines()[1] == (
        "Recovered: live.voice 2026-11-20 succeeded again; it had failed in run "
        f"{failed.run_id[:8]}."
    )
    assert f"Run: {UI}/runs/{landed.run_id}" in recovered

    out, err = capfd.readouterr()
    everything = "\n".join([caplog.text, out, err, alerting.everything_recorded()])
    assert "alert posted: polyai-sync: sync failed" in err  # the sensor's log (Dagster's)
    assert TOKEN not in everything and receiver.url not in everything
    files = [p for p in tmp_path.rglob("*") if p.is_file()]  # the instance, warehouse, lake
    assert [p for p in files if TOKEN.encode() in p.read_bytes()] == []


def test_a_backfill_run_names_every_window_it_did_not_land(
    alerting: Alerting, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYAI_API_KEY", WRONG_KEY)
    failed = alerting.run(
        SYNC_JOB,
        tags={
            "dagster/asset_partition_range_start": "2026-11-19|live.chat",
            "dagster/asset_partition_range_end": "2026-11-20|live.chat",
        },
    )
    assert not failed.success
    alerting.evaluate()  # its first evaluation: it reads the last day's runs
    (text,) = receiver.texts()
    assert text.splitlines()[0] == ("polyai-sync: sync failed for live.chat 2026-11-19, 2026-11-20")


def test_a_failed_check_of_severity_error_alerts_and_a_warning_does_not(
    alerting: Alerting, receiver: Receiver
) -> None:
    alerting.evaluate()
    # A window never published: the window checks fail, with severity ERROR (a successful run).
    checked = alerting.run(CHECK_JOB, partition_key=KEY)
    # No scope has its newest window: the freshness check fails, with severity WARN.
    fresh = alerting.run(FRESHNESS_JOB)
    assert checked.success and fresh.success
    assert not fresh.get_asset_check_evaluations()[0].passed
    alerting.evaluate()
    (text,) = receiver.texts()
    lines = text.splitlines()
    assert lines[0] == f"polyai-sync: {CHECK_JOB} checks failed"
    assert lines[1] == f"{len(CHECKS)} check(s) of severity ERROR failed:", text
    assert lines[2].startswith("Check ") and lines[2].endswith(
        f": {KEY} was never published: nothing to check"
    )
    assert lines[-2] == f"... and {len(CHECKS) - 5} more"  # five shown
    assert lines[-1] == f"Run: {UI}/runs/{checked.run_id}"


def test_a_webhook_that_is_down_keeps_the_alert_and_says_so_without_the_url(
    alerting: Alerting,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    alerting.evaluate()
    monkeypatch.setenv("POLYAI_API_KEY", WRONG_KEY)
    failed = alerting.run(SYNC_JOB, partition_key=KEY)
    logged = capfd.readouterr().err  # the sensor logs through Dagster's logger, to stderr

    receiver.status = 503  # down: the alert is kept, each evaluation tries it again
    for _ in range(2):
        result = alerting.evaluate()
        assert "1 kept: the alert webhook answered HTTP 503" in str(result.skip_message)
    assert receiver.attempts == 2 and receiver.posts == []
    warned = capfd.readouterr().err
    assert "the alert webhook answered HTTP 503: 1 alert(s) kept" in warned

    receiver.status = 200  # back: delivered, once
    alerting.evaluate()
    alerting.evaluate()
    (text,) = receiver.texts()
    assert f"/runs/{failed.run_id}" in text

    receiver.status = 404  # refused (a revoked webhook): dropped, loudly
    alerting.run(SYNC_JOB, partition_key=KEY)
    alerting.evaluate()
    dropped = capfd.readouterr().err
    assert "alert dropped, the alert webhook answered HTTP 404: polyai-sync: sync failed" in dropped
    attempts = receiver.attempts
    alerting.evaluate()
    assert receiver.attempts == attempts  # not tried again

    everything = "\n".join([logged, warned, dropped, caplog.text, alerting.everything_recorded()])
    assert TOKEN not in everything


@pytest.mark.parametrize("fault", ["refused", "503", "404", "timeout"])
def test_a_delivery_error_never_shows_the_url(receiver: Receiver, fault: str) -> None:
    url = receiver.url
    webhook = AlertWebhook(url=url, timeout_seconds=0.5)
    expected: type[Exception] = AlertDeliveryError
    if fault == "refused":
        receiver.stop()
    elif fault == "timeout":
        receiver.delay = 2.0
    else:
        receiver.status = int(fault)
        expected = AlertRefusedError if fault == "404" else AlertDeliveryError
    with pytest.raises(AlertDeliveryError) as raised:
        webhook.post({"text": "x"})
    assert type(raised.value) is expected
    error = raised.value  # and no chained error that would show the request
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    shown = f"{raised.value!s} {raised.value!r} {webhook!r} {webhook!s}"
    assert TOKEN not in shown and url not in shown


def test_the_sensor_is_defined_only_with_a_webhook_and_binds_it_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = build_definitions(Settings.from_env({}))
    assert ALERT_SENSOR not in {s.name for s in default.get_repository_def().sensor_defs}
    assert "alert_webhook" not in (default.resources or {})

    url = f"https://hooks.example.test/services/{TOKEN}"
    monkeypatch.setenv("POLYAI_ALERT_WEBHOOK_URL", url)
    defs = build_definitions(Settings.from_env({"POLYAI_ALERT_WEBHOOK_URL": url}))
    sensor = defs.get_repository_def().get_sensor_def(ALERT_SENSOR)
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    resource = (defs.resources or {})["alert_webhook"]
    # The config the UI shows: the variable, not its value.
    assert resource._convert_to_config_dictionary()["url"] == {"env": "POLYAI_ALERT_WEBHOOK_URL"}
    shown = repr(resource) + str(resource) + repr(defs.resources)
    assert TOKEN not in shown


DAEMON = str(Path(sys.executable).parent / "dagster-daemon")


@pytest.mark.e2e
def test_the_daemon_alerts_for_a_failed_sync_the_cli_recorded(
    simulator: SimulatorServer, receiver: Receiver, tmp_path: Path
) -> None:
    env = source_env(simulator, tmp_path)
    env["POLYAI_API_KEY"] = WRONG_KEY
    day = str(SYNC_DAY)
    synced = run_cli("sync", "--start", day, "--end", day, "--channel", "voice", env=env)
    assert synced.returncode == 1, synced.stdout + synced.stderr
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs()

    env.update(POLYAI_ALERT_WEBHOOK_URL=receiver.url, DAGSTER_UI_URL=UI)
    out, err = tmp_path / "daemon.out", tmp_path / "daemon.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        daemon = subprocess.Popen(
            [DAEMON, "run", "-m", "pipelines.definitions"],
            env=env,
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 90
            while not receiver.posts:
                assert daemon.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "no alert came"
                time.sleep(0.5)
        finally:
            stop_group(daemon)
    (text,) = receiver.texts()
    assert text.splitlines()[0] == "polyai-sync: sync failed for live.voice 2026-11-20"
    assert "HTTP 403" in text and f"Run: {UI}/runs/{run.run_id}" in text
    logs = out.read_text() + err.read_text()
    assert ALERT_SENSOR in logs  # the daemon's own account of the sensor's tick
    assert TOKEN not in logs + synced.stdout + synced.stderr
    stored = [p for p in Path(env["DAGSTER_HOME"]).rglob("*") if p.is_file()]
    assert [p for p in stored if TOKEN.encode() in p.read_bytes()] == []
