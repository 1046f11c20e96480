"""A run that `polyai-sync sync` started is an ordinary run of the code location: the UI that
`polyai-sync ui` opens (dagster dev: webserver and daemon) lists it, with its backfill in the
Backfills list, and re-executes it."""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from simulator import SimulatorServer
from tests.conftest import SYNC_DAY, free_port
from tests.pipelines.test_cli import CLI, run_cli, source_env

REEXECUTE = """
mutation($parent: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parent, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"""
JOB_RUNS = """{
  runsOrError { ... on Runs { results { runId } } }
  partitionBackfillsOrError { ... on PartitionBackfills { results { id status } } }
}"""


def graphql(port: int, query: str, **variables: str) -> dict:
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": query, "variables": variables},
        timeout=30,
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_a_cli_run_is_listed_with_its_backfill_and_re_executed_from_the_ui(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    env = source_env(simulator, tmp_path)
    day = str(SYNC_DAY)
    synced = run_cli("sync", "--start", day, "--end", day, "--channel", "voice", env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    backfill_id = synced.stdout.split("Backfill ", 1)[1].split(",")[0]
    parent = synced.stdout.split("runs ", 1)[1].split()[0]

    port = free_port()
    ui = subprocess.Popen(
        [CLI, "ui", "--port", str(port)],
        env=env,
        cwd=Path(env["DAGSTER_HOME"]).parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                listed = graphql(port, JOB_RUNS)
                break
            except (httpx.HTTPError, ValueError, AssertionError):
                assert ui.poll() is None and time.monotonic() < deadline, "the UI never answered"
                time.sleep(1)
        assert parent in [run["runId"] for run in listed["runsOrError"]["results"]]
        assert {"id": backfill_id, "status": "COMPLETED_SUCCESS"} in listed[
            "partitionBackfillsOrError"
        ]["results"]

        launched = graphql(port, REEXECUTE, parent=parent)["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        child = launched["run"]["runId"]
        while True:
            run = graphql(port, RUN, id=child)["runOrError"]
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            assert time.monotonic() < deadline + 120, run
            time.sleep(1)
        assert run["status"] == "SUCCESS"
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert tags["dagster/parent_run_id"] == parent
        # The window it re-syncs: the parent's partition tags, carried over.
        window = tags.get("dagster/partition") or tags["dagster/asset_partition_range_start"]
        assert window == f"{day}|live.voice"
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
