"""Only the code location reads the environment when imported: the runner and the command line
load the definitions when a sync needs them, so a bad setting cannot break an import (``--help``,
a benchmark that sets the environment after its imports)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipelines.cli_runs import clean_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BAD_SETTING = clean_env(POLYAI_WINDOWS_PER_RUN="abc")


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _import(modules: str) -> subprocess.CompletedProcess[str]:
    return _python(f"import {modules}", BAD_SETTING)


def test_runner_and_cli_import_under_a_bad_setting() -> None:
    done = _import("pipelines.runner, pipelines.cli")
    assert done.returncode == 0, done.stderr


def test_the_code_location_fails_at_import_naming_the_bad_setting() -> None:
    done = _import("pipelines.definitions")
    assert done.returncode != 0
    assert "POLYAI_WINDOWS_PER_RUN" in done.stderr


def test_the_code_location_imports_no_dataframe_library_and_no_event_log() -> None:
    """What the steps need (pandas, pyarrow and numpy, ~0.5 s; Dagster's SQLite event log,
    ~0.3 s) is imported where first used: every process that loads the code location (the
    webserver, the daemon, each run, each command) skips them until a step runs."""
    heavy = ("pandas", "pyarrow", "numpy", "dagster._core.storage.event_log.sqlite")
    code = (
        "import sys, pipelines.definitions, pipelines.run_launcher; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    done = _python(code, clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
