"""Both pagination styles: cursor (stable while conversations arrive) and offset (drifts)."""

from datetime import timedelta

import pytest

from core.pagination import MAX_EMPTY_PAGES, CursorPaginator, OffsetPaginator, PaginationError
from core.query import ConversationQuery
from core.windows import daily_window
from resources.polyai_api import CursorRejectedError
from tests.conftest import SYNC_DAY, Serve, client_for
from tests.contract.expected import truth

WINDOW = daily_window(SYNC_DAY)
QUERY = ConversationQuery(start_time=WINDOW.start, end_time=WINDOW.end)


@pytest.mark.parametrize("style", ["cursor", "offset"])
def test_both_styles_read_every_conversation_once(serve: Serve, style: str) -> None:
    server = serve()
    pages = list(client_for(server, page_size=45).iter_pages(QUERY.with_limit(45), style))
    ids = [c["id"] for p in pages for c in p.conversations]
    assert ids == [c["id"] for c in truth(server)]
    assert len(pages) > 3
    marker = "cursor=" if style == "cursor" else "offset="
    assert all(marker in p for p in server.recent_paths[1:])
    assert marker not in server.recent_paths[0]


def test_cursor_stays_stable_while_late_conversations_arrive_and_offset_drifts(
    serve: Serve,
) -> None:
    """Late arrivals land *before* the reader's position: an offset counted from the start
    now points one further back per arrival and re-reads conversations; a keyset cursor
    does not (the arrivals it passed are the nightly lookback's to pick up)."""
    late_window = daily_window(SYNC_DAY)
    q = ConversationQuery(start_time=late_window.start, end_time=late_window.end, limit=10)
    clock = late_window.start + timedelta(hours=14)
    results = {}
    for style in ("cursor", "offset"):
        server = serve(conversations_per_day=600, late_arrival_rate=0.5, now=clock)
        pages = client_for(server).iter_pages(q, style)
        seen: list[str] = []
        # Read up to 40 minutes before "now": late conversations that started shortly before
        # that point have not arrived yet.
        position = f"{clock - timedelta(minutes=40):%Y-%m-%dT%H:%M}"
        for page in pages:
            seen += [c["id"] for c in page.conversations]
            if page.conversations[-1]["started_at"] >= position:
                break
        server.dataset.set_now(late_window.end + timedelta(hours=2))  # the late ones arrive
        seen += [c["id"] for page in pages for c in page.conversations]
        results[style] = seen
    assert len(results["cursor"]) == len(set(results["cursor"]))
    assert len(results["offset"]) > len(set(results["offset"]))  # duplicates: drift


def test_malformed_cursor_is_rejected_with_the_servers_message(serve: Serve) -> None:
    server = serve()
    with pytest.raises(CursorRejectedError, match=r"HTTP 400.*malformed cursor"):
        next(client_for(server).iter_pages(QUERY, start_cursor="!!not-a-cursor!!"))


def test_resuming_from_a_cursor_continues_where_it_left_off(serve: Serve) -> None:
    server = serve()
    client = client_for(server, page_size=30)
    pages = client.iter_pages(QUERY.with_limit(30))
    first = next(pages)
    rest = list(client.iter_pages(QUERY.with_limit(30), start_cursor=first.next_cursor))
    ids = [c["id"] for c in first.conversations] + [c["id"] for p in rest for c in p.conversations]
    assert ids == [c["id"] for c in truth(server)]


def test_cursor_paginator_follows_empty_pages_stops_on_a_null_cursor_refuses_a_loop() -> None:
    pages = CursorPaginator()
    assert pages.position() == {}
    assert pages.advance({"conversations": [{}], "cursor": "A"}) is True
    assert pages.position() == {"cursor": "A"}
    # An empty page that still carries a cursor is not the end: what follows it is read.
    assert pages.advance({"conversations": [], "cursor": "B"}) is True
    assert pages.position() == {"cursor": "B"}
    assert pages.advance({"conversations": [], "cursor": None}) is False
    assert CursorPaginator().advance({"conversations": [{}], "cursor": None}) is False
    endless = CursorPaginator()
    with pytest.raises(PaginationError, match="empty pages in a row"):
        for n in range(MAX_EMPTY_PAGES + 1):
            endless.advance({"conversations": [], "cursor": f"E{n}"})
    looping = CursorPaginator()
    looping.advance({"conversations": [{}], "cursor": "A"})
    with pytest.raises(PaginationError, match="cursor 'A' twice"):
        looping.advance({"conversations": [{}], "cursor": "A"})


def test_offset_paginator_follows_next_offset_and_refuses_to_go_back() -> None:
    pages = OffsetPaginator()
    assert pages.advance({"conversations": [{}], "next_offset": 10}) is True
    assert pages.position() == {"offset": 10}
    assert pages.advance({"conversations": [{}]}) is False
    with pytest.raises(PaginationError, match="next_offset 5 after offset 10"):
        pages.advance({"conversations": [{}], "next_offset": 5})
