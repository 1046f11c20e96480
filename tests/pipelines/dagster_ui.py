"""The Dagster UI as a user opens it for a test: `polyai-sync ui` (dagster dev: webserver and
daemon) on a free port, and its GraphQL API."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port
from tests.pipelines.cli_runs import CLI

RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"""
BACKFILL = """query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""
FINISHED_RUN = ("SUCCESS", "FAILURE", "CANCELED")
FINISHED_BACKFILL = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


def graphql(port: int, query: str, **variables: Any) -> dict:
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": query, "variables": variables},
        timeout=30,
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@contextmanager
def polyai_sync_ui(env: dict[str, str]) -> Iterator[int]:
    """`polyai-sync ui` in its own process group, once its GraphQL API answers; its port."""
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
                graphql(port, "{ version }")
                break
            except (httpx.HTTPError, ValueError, AssertionError):
                assert ui.poll() is None and time.monotonic() < deadline, "the UI never answered"
                time.sleep(1)
        yield port
    finally:
        stop_group(ui)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to a process started in a session of its own and all its children; SIGKILL
    if they are not gone within a minute."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_for(port: int, query: str, done: tuple[str, ...], seconds: float, **ids: str) -> dict:
    """Poll ``query`` (a run's or a backfill's) until its status is one of ``done``."""
    deadline = time.monotonic() + seconds
    while True:
        data = next(iter(graphql(port, query, **ids).values()))
        if data.get("status") in done:
            return data
        assert time.monotonic() < deadline, data
        time.sleep(1)
