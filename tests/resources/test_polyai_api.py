"""The API client against the simulator over loopback HTTP."""

import pytest

from core.windows import Scope, daily_window
from resources.polyai_api import PolyAIClient, PolyAIHTTPError
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY

WINDOW = daily_window(SYNC_DAY)
LIVE_VOICE = Scope("live", "voice")


def test_pages_through_the_window_with_the_cursor(
    client: PolyAIClient, simulator: SimulatorServer
) -> None:
    pages = list(client.iter_window(LIVE_VOICE, WINDOW))
    expected = list(
        simulator.dataset.conversations_in(
            "live", ["voice"], WINDOW.start, WINDOW.end, latency=True, metadata=True
        )
    )
    assert len(pages) == -(-len(expected) // client.page_size) > 2
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    assert all(len(p.conversations) == client.page_size for p in pages[:-1])
    assert pages[-1].next_cursor is None
    assert [c for p in pages for c in p.conversations] == expected
    # One request per page: pagination neither re-reads nor skips.
    assert simulator.requests == len(pages)


def test_wrong_key_fails_with_status_and_server_message_without_the_key(
    simulator: SimulatorServer,
) -> None:
    bad = PolyAIClient(
        base_url=simulator.base_url,
        api_key="sk-wrong-and-secret",
        account_id=simulator.config.account_id,
        project_id=simulator.config.project_id,
    )
    with pytest.raises(PolyAIHTTPError) as excinfo:
        list(bad.iter_window(LIVE_VOICE, WINDOW))
    assert excinfo.value.status == 403
    assert "not valid for this project" in str(excinfo.value)
    assert "sk-wrong-and-secret" not in str(excinfo.value)
    assert "sk-wrong-and-secret" not in repr(bad)


def test_unknown_project_fails_with_404(simulator: SimulatorServer, client: PolyAIClient) -> None:
    other = client.model_copy(update={"project_id": "nope"})
    with pytest.raises(PolyAIHTTPError, match="HTTP 404"):
        next(other.iter_window(LIVE_VOICE, WINDOW))
