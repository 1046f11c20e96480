"""The real Dagster webserver, loaded from workspace.yaml, shows the runs the CLI recorded."""

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from simulator import SimulatorServer
from tests.conftest import SYNC_DAY, free_port
from tests.pipelines.cli_runs import run_cli, source_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
QUERY = """{
  assetNodeOrError(assetKey: {path: ["polyai", "conversations"]}) {
    ... on AssetNode { partitionStats { numMaterialized numFailed } }
  }
  runsOrError { ... on Runs { results { status tags { key value } } } }
}"""


def test_webserver_shows_partitions_materialized_from_the_cli(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    env = source_env(simulator, tmp_path)
    synced = run_cli("sync", "--start", str(SYNC_DAY), "--end", str(SYNC_DAY), env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr

    port = free_port()
    webserver = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            str(ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=10
                )
                body = response.json()["data"]
                if body["assetNodeOrError"].get("partitionStats") is not None:
                    break
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass
            time.sleep(0.5)
        assert body is not None, "the webserver never answered"
        assert body["assetNodeOrError"]["partitionStats"] == {"numMaterialized": 2, "numFailed": 0}
        # One backfill run covers both scopes' window (the backfill policy's grouping).
        statuses = [run["status"] for run in body["runsOrError"]["results"]]
        assert statuses and set(statuses) == {"SUCCESS"}
        # The Runs list says in words what launched a run; the processes recovery follows
        # (host|boot id|pid|start) are kept in tags it does not list.
        for run in body["runsOrError"]["results"]:
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            assert tags["polyai-sync/launched_by"].startswith(
                f"polyai-sync sync {SYNC_DAY}..{SYNC_DAY} on "
            )
            assert not any("worker" in key or "driver" in key for key in tags), tags
    finally:
        webserver.terminate()
        webserver.wait(timeout=30)
