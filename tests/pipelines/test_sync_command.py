"""The sync command's start: the garbage collector paused while it imports, and given back."""

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pipelines.sync_command import collector_paused


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector as this process had it, whatever the test does to it."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("collector")
def test_the_collector_is_off_while_importing_then_on_with_what_was_imported_frozen() -> None:
    gc.unfreeze()
    with collector_paused():
        assert not gc.isenabled()
        made_inside = [[] for _ in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(made_inside)


@pytest.mark.usefixtures("collector")
def test_an_import_that_fails_gives_the_collector_back() -> None:
    with pytest.raises(ImportError), collector_paused():
        raise ImportError("a bad setting fails the code location's import")
    assert gc.isenabled()


_EXIT_AFTER_IMPORTS = """
import sys
from pipelines.sync_command import collector_paused, collector_resumed
with collector_paused():
    import pipelines.definitions
import duckdb
duckdb.connect().execute("select 1").fetchall()
if sys.argv[1] == "resumed":
    collector_resumed()
"""


@pytest.mark.e2e
@pytest.mark.parametrize("end", ["resumed", "frozen"])
def test_a_command_that_resumes_the_collector_exits_without_leak_reports(end: str) -> None:
    """Frozen at exit, DuckDB's types are reported as leaked on stderr (dozens of lines after
    every sync); given back to the collector, the exit is silent."""
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_AFTER_IMPORTS, end],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    leaked = "leaked" in done.stderr
    assert leaked == (end == "frozen"), done.stderr[-2000:]
