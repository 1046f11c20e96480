"""The sync command's start: the garbage collector paused while it imports, and given back."""

import gc
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
