"""What a window's failure leaves in its state, and what the next sync makes of it, in process
against the hostile API: a failure that says nothing against the pages fetched keeps them (the
next sync resumes after them); one that does (too many invalid records, an invalid body) keeps
nothing; an error that concerns every window stops the sync, the window marked failed."""

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from core.windows import Scope, daily_window
from resources.polyai_errors import PolyAIAuthError
from resources.warehouse import WindowKey, read_state, warehouse_for
from resources.warehouse.state import last_load
from sync.window import WindowFailure, WindowSyncResult, sync_window, sync_windows
from tests.hostile.server import (
    ACCOUNT,
    KEY,
    PROJECT,
    HostileAPI,
    Query,
    Reply,
    conversation,
    serving,
)

VOICE = Scope("live", "voice")
DAYS = [date(2026, 1, d) for d in (4, 5, 6)]


def _records(day: date, n: int) -> list[dict[str, Any]]:
    return [conversation(f"{day}-{i}", f"{day}T0{i}:00:00Z") for i in range(n)]


@pytest.fixture
def api() -> HostileAPI:
    api = HostileAPI()
    for day in DAYS:
        api.put("live", "voice", str(day), _records(day, 4))
    return api


def _client(url: str, **options: Any):
    from resources.polyai_api import PolyAIClient

    return PolyAIClient(
        base_url=url,
        api_key=KEY,
        account_id=ACCOUNT,
        project_id=PROJECT,
        allow_insecure_http=True,
        **options,
    )


def _sync(api: HostileAPI, url: str, tmp_path: Path, **options: Any) -> list[Any]:
    client = _client(url, page_size=2, max_attempts=2)
    warehouse = warehouse_for(f"duckdb:///{tmp_path / 'w.duckdb'}")
    windows = [(VOICE, daily_window(day)) for day in DAYS]
    return list(sync_windows(client, warehouse, windows, keep_going=True, **options))


def _state(tmp_path: Path, day: date):
    warehouse = warehouse_for(f"duckdb:///{tmp_path / 'w.duckdb'}")
    return read_state(warehouse, WindowKey(ACCOUNT, PROJECT, VOICE, daily_window(day)))


def test_an_unavailable_api_keeps_the_walk_and_the_next_sync_resumes_after_it(
    api: HostileAPI, tmp_path: Path
) -> None:
    def second_page_down(query: Query) -> Reply | None:
        if query["start_time"][0].startswith(str(DAYS[1])) and "cursor" in query:
            return Reply(503, b'{"detail": "down"}', {"Retry-After": "0"})
        return None

    api.override = second_page_down
    with serving(api) as url:
        first = _sync(api, url, tmp_path)
        assert [type(r) for r in first] == [WindowSyncResult, WindowFailure, WindowSyncResult]
        failure = first[1]
        assert failure.resumes and "HTTP 503" in failure.message
        assert "a re-run resumes at page 2" in failure.message
        state = _state(tmp_path, DAYS[1])
        assert (state.status, state.pages, state.cursor) == ("failed", 1, "after-2")
        assert state.error == failure.message

        api.override = None
        asked = len(api.requests)
        again = _sync(api, url, tmp_path)

    assert all(isinstance(r, WindowSyncResult) for r in again)
    assert again[1].resumed_from_page == 2 and again[1].rows["conversations"] == 4
    resumed = [q for q in api.requests[asked:] if q["start_time"][0].startswith(str(DAYS[1]))]
    assert resumed[0]["cursor"] == ["after-2"]  # not page 1 again
    assert _state(tmp_path, DAYS[1]).status == "complete"


def test_an_invalid_body_keeps_nothing_and_what_was_published_stays_published(
    api: HostileAPI, tmp_path: Path
) -> None:
    with serving(api) as url:
        published = _sync(api, url, tmp_path)
        assert all(isinstance(r, WindowSyncResult) for r in published)
        warehouse = warehouse_for(f"duckdb:///{tmp_path / 'w.duckdb'}")
        before = last_load(warehouse, VOICE, daily_window(DAYS[1]))

        def broken_second_page(query: Query) -> Reply | None:
            if query["start_time"][0].startswith(str(DAYS[1])) and "cursor" in query:
                return Reply(body=b'{"conversations": {}, "cursor": null}')
            return None

        api.override = broken_second_page
        again = _sync(api, url, tmp_path)

    failure = again[1]
    assert isinstance(failure, WindowFailure) and not failure.resumes
    assert "fetches the window again from its first page" in failure.message
    state = _state(tmp_path, DAYS[1])
    assert (state.status, state.pages, state.cursor) == ("failed", 0, None)
    # The window still holds, and reports, the load published before.
    assert before is not None and last_load(warehouse, VOICE, daily_window(DAYS[1])) == before
    assert warehouse.row_counts()["conversations"] == 12


def test_a_refused_key_stops_the_sync_and_marks_its_window_failed_with_its_walk(
    api: HostileAPI, tmp_path: Path
) -> None:
    def refused_on_second_page(query: Query) -> Reply | None:
        if "cursor" in query:
            return Reply(401, b'{"detail": "key revoked"}')
        return None

    api.override = refused_on_second_page
    with serving(api) as url, pytest.raises(PolyAIAuthError):
        _sync(api, url, tmp_path)
    state = _state(tmp_path, DAYS[0])
    assert (state.status, state.pages) == ("failed", 1)
    assert "401" in (state.error or "")


def test_sync_window_raises_a_window_failure_after_recording_it(
    api: HostileAPI, tmp_path: Path
) -> None:
    from resources.polyai_errors import PolyAIResponseError

    api.override = lambda query: Reply(body=b'{"conversations": 3}')
    warehouse = warehouse_for(f"duckdb:///{tmp_path / 'w.duckdb'}")
    with serving(api) as url, pytest.raises(PolyAIResponseError):
        sync_window(_client(url), warehouse, VOICE, daily_window(DAYS[0]))
    assert _state(tmp_path, DAYS[0]).status == "failed"
