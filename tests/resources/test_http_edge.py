"""The client at the HTTP edge, against servers written here byte by byte: an answer longer than
its Content-Length never poisons the next request on a kept-alive connection, one request's
tries and waits stay within their budget, and an answer still arriving after a while is said."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from core.query import ConversationQuery
from resources import polyai_responses
from resources.polyai_api import PolyAIClient, PolyAIUnavailableError, RequestStats
from tests.hostile.server import HostileAPI, Reply, serving

QUERY = ConversationQuery(
    environment="live",
    start_time=datetime(2026, 1, 4, tzinfo=UTC),
    end_time=datetime(2026, 1, 5, tzinfo=UTC),
)
EMPTY = b'{"conversations": [], "cursor": null}'


def _client(base_url: str, **options) -> PolyAIClient:
    return PolyAIClient(
        base_url=base_url,
        api_key="k",
        account_id="acct-hostile",
        project_id="proj-hostile",
        allow_insecure_http=True,
        backoff_base_seconds=0.001,
        backoff_max_seconds=0.01,
        **options,
    )


@contextmanager
def _overlong_first_answer() -> Iterator[tuple[str, list[int]]]:
    """A keep-alive HTTP/1.1 server whose first answer sends more bytes than its
    Content-Length says (a valid answer follows on every request after); yields its URL and
    the number of requests each connection carried."""
    listener = socket.create_server(("127.0.0.1", 0))
    per_connection: list[int] = []
    answered = threading.Lock()
    first = [True]

    def serve(conn: socket.socket, index: int) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                per_connection[index] += 1
                with answered:
                    overlong, first[0] = first[0], False
                body = EMPTY
                length = 10 if overlong else len(body)  # the client reads '{"conversa'
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                conn.sendall(f"{head}Content-Length: {length}\r\n\r\n".encode() + body)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            per_connection.append(0)
            index = len(per_connection) - 1
            threading.Thread(target=serve, args=(conn, index), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", per_connection
    finally:
        listener.close()


def test_an_answer_longer_than_it_said_is_not_read_as_the_next_one() -> None:
    stats = RequestStats()
    with _overlong_first_answer() as (url, per_connection):
        pages = list(_client(url, max_attempts=3).iter_pages(QUERY, stats=stats))
    assert [page.conversations for page in pages] == [[]]
    # One retry, on a new connection: the first's leftover bytes were never read as an answer.
    assert (stats.requests, stats.retries) == (2, 1)
    assert per_connection == [1, 1]


def test_a_request_gives_up_once_its_next_try_would_start_past_its_budget() -> None:
    api = HostileAPI()
    api.override = lambda query: Reply(503, b'{"detail": "busy"}', {"Retry-After": "1"})
    stats = RequestStats()
    with serving(api) as url, pytest.raises(PolyAIUnavailableError) as raised:
        client = _client(url, max_attempts=20, request_budget_seconds=1.5)
        list(client.iter_pages(QUERY, stats=stats))
    # Tried at 0 s and 1 s; a third try would start at 2 s, past the 1.5 s budget.
    assert stats.requests == 2
    assert "gave up after 2 attempts" in str(raised.value) and "HTTP 503" in str(raised.value)


def test_a_retry_names_the_status_and_an_answer_still_arriving_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(polyai_responses, "SLOW_NOTICE_SECONDS", 0.3)
    api = HostileAPI()
    dripped = (b'{"conversations": [', b"], ", b'"cursor": null}')  # 0.25 s apart
    answers = iter(
        [
            Reply(429, b'{"detail": "slow down"}', {"Retry-After": "0"}),
            Reply(body=iter(dripped), pause=0.25),
        ]
    )
    api.override = lambda query: next(answers, None)
    with serving(api) as url, caplog.at_level(logging.WARNING):
        pages = list(_client(url).iter_pages(QUERY))
    assert [page.conversations for page in pages] == [[]]
    lines = [record.getMessage() for record in caplog.records]
    assert any("retrying" in line and "HTTP 429: slow down" in line for line in lines), lines
    assert any("still arriving after 0.3s" in line for line in lines), lines
