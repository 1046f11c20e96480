"""Dagster's standard entry points accept the project: `dg` (declared in pyproject.toml's
[tool.dg]) loads the same code location as workspace.yaml, under the same name."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.runner import LOCATION_NAME
from tests.pipelines.cli_runs import clean_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DG = str(Path(sys.executable).parent / "dg")


def dg(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = clean_env(DAGSTER_HOME=str(home), POLYAI_SYNC_START="2026-11-01", POLYAI_DBT_MODELS="1")
    return subprocess.run(
        [DG, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_dg_check_defs_passes(tmp_path: Path) -> None:
    checked = dg("check", "defs", tmp_path=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout


def test_dg_list_defs_lists_the_sync_assets_jobs_and_schedules(tmp_path: Path) -> None:
    listed = dg("list", "defs", "--json", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    defs = json.loads(listed.stdout)
    assets = {asset["asset_key"] for asset in defs["assets"]}
    assert {"polyai/conversations", "polyai/turns", "polyai/conversation_kpis"} <= assets
    assert {job["name"] for job in defs["jobs"]} >= {"polyai_sync", "polyai_scope_freshness"}
    assert {s["name"] for s in defs["schedules"]} >= {"polyai_nightly"}


def test_dg_names_the_code_location_as_workspace_yaml_does() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'code_location_name = "{LOCATION_NAME}"' in pyproject
    assert f"python_module: {LOCATION_NAME}" in (ROOT / "workspace.yaml").read_text()
