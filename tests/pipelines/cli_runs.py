"""The real ``polyai-sync`` as a user runs it: a process of its own, an environment cleared of
the developer's settings, the bundled simulator as its source."""

import os
import subprocess
import sys
from pathlib import Path

from simulator import SimulatorServer

CLI = str(Path(sys.executable).parent / "polyai-sync")


def clean_env(**extra: str) -> dict[str, str]:
    """The developer's settings cleared; the dbt models off unless ``extra`` turns them on
    (``POLYAI_DBT_MODELS="1"``): these tests are about the sync, and dbt costs a run 5-8 s;
    the dbt project has tests of its own (tests/assets/test_dbt.py) and is on in those that
    read the KPIs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYAI_", "WAREHOUSE_"))}
    env.pop("DAGSTER_HOME", None)
    env["POLYAI_DBT_MODELS"] = "0"
    env.update(extra)
    return env


def source_env(simulator: SimulatorServer, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        **simulator.source_variables(),
        POLYAI_SYNC_START="2026-11-01",
        WAREHOUSE_URL=f"duckdb:///{tmp_path / 'wh.duckdb'}",
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
    )


def run_cli(*args: str, env: dict[str, str], cwd: Path | None = None):
    """``polyai-sync ARGS`` as a separate process; by default in a folder of its own."""
    cwd = cwd or Path(env["DAGSTER_HOME"]).parent
    return subprocess.run(
        [CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )
