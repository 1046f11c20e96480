"""A pytest run ends on pytest's own summary line.

DuckDB's bindings (nanobind) print a report of every DuckDB object still alive when the
interpreter shuts down. A run that mixes a Hypothesis property (Hypothesis adds a
garbage-collector callback and never removes it), the import of every project module and a
DuckDB warehouse used to end on 39 such lines after the summary; ``tests/conftest.py`` removes
the callbacks the run added, and this runs that mix in a child pytest and reads how it ends.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[1]
MIX = [
    "tests/core/test_bad_input_properties.py::test_every_record_lands_or_is_quarantined_with_a_reason",
    "tests/core/test_errors.py::test_only_what_may_pass_by_itself_is_transient",
    "tests/resources/test_warehouse.py::test_schema_is_created_with_keys_and_utc_timestamps[duckdb]",
]


def test_a_run_with_hypothesis_dagster_and_duckdb_ends_on_the_summary_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n0", "-p", "no:cacheprovider", *MIX],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    last_line = output.strip().splitlines()[-1]
    assert re.fullmatch(r"3 passed in [\d.]+s", last_line), output[-3000:]
    assert "nanobind" not in output, output[-3000:]
