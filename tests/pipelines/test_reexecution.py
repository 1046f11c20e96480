"""A run that `polyai-sync sync` started is an ordinary run of the code location: the UI that
`polyai-sync ui` opens (dagster dev: webserver and daemon) lists it, with its backfill in the
Backfills list, and re-executes it."""

from pathlib import Path

import pytest

from simulator import SimulatorServer
from tests.conftest import SYNC_DAY
from tests.pipelines.cli_runs import run_cli, source_env
from tests.pipelines.dagster_ui import FINISHED_RUN, RUN, graphql, polyai_sync_ui, wait_for

pytestmark = pytest.mark.e2e

REEXECUTE = """
mutation($parent: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parent, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
JOB_RUNS = """{
  runsOrError { ... on Runs { results { runId } } }
  partitionBackfillsOrError { ... on PartitionBackfills { results { id status } } }
}"""


def test_a_cli_run_is_listed_with_its_backfill_and_re_executed_from_the_ui(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    env = source_env(simulator, tmp_path)
    day = str(SYNC_DAY)
    synced = run_cli("sync", "--start", day, "--end", day, "--channel", "voice", env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    backfill_id = synced.stdout.split("Backfill ", 1)[1].split(",")[0]
    parent = synced.stdout.split("runs ", 1)[1].split()[0]

    with polyai_sync_ui(env) as port:
        listed = graphql(port, JOB_RUNS)
        assert parent in [run["runId"] for run in listed["runsOrError"]["results"]]
        assert {"id": backfill_id, "status": "COMPLETED_SUCCESS"} in listed[
            "partitionBackfillsOrError"
        ]["results"]

        launched = graphql(port, REEXECUTE, parent=parent)["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run = wait_for(port, RUN, FINISHED_RUN, 240, id=launched["run"]["runId"])
        assert run["status"] == "SUCCESS"
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert tags["dagster/parent_run_id"] == parent
        # The window it re-syncs: the parent's partition tags, carried over.
        window = tags.get("dagster/partition") or tags["dagster/asset_partition_range_start"]
        assert window == f"{day}|live.voice"
