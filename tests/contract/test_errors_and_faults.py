"""Every error status and every injected fault: what the client does with each."""

import time

import pytest

from core.query import ConversationQuery
from core.windows import daily_window
from resources.polyai_api import (
    CursorRejectedError,
    PolyAIAuthError,
    PolyAIHTTPError,
    PolyAITransportError,
    RequestStats,
)
from tests.conftest import SYNC_DAY, Serve, client_for
from tests.contract.expected import truth

WINDOW = daily_window(SYNC_DAY)
QUERY = ConversationQuery(start_time=WINDOW.start, end_time=WINDOW.end)


def read_all(client, stats: RequestStats | None = None, query=QUERY) -> list[dict]:
    return [c for page in client.iter_pages(query, stats=stats) for c in page.conversations]


# --- errors that fail at once --------------------------------------------------------------


def test_400_fails_at_once_with_the_servers_message(serve: Serve) -> None:
    server = serve()
    stats = RequestStats()
    bad = ConversationQuery(
        start_time=WINDOW.start, end_time=WINDOW.end, extra={"in_progress": "maybe"}
    )
    with pytest.raises(PolyAIHTTPError, match=r"HTTP 400.*in_progress must be true or false"):
        read_all(client_for(server), stats, bad)
    assert (stats.requests, stats.retries) == (1, 0)


def test_an_unknown_channel_is_a_400_naming_it(serve: Serve) -> None:
    server = serve()
    unknown = ConversationQuery(start_time=WINDOW.start, end_time=WINDOW.end, channels=("SMS",))
    with pytest.raises(PolyAIHTTPError, match=r"HTTP 400.*channel 'SMS' is not one of") as error:
        read_all(client_for(server), query=unknown)
    assert error.value.status == 400
    assert server.requests == 1


@pytest.mark.parametrize(("key", "status"), [("", 401), ("sk-someone-elses", 403)])
def test_401_and_403_fail_at_once(serve: Serve, key: str, status: int) -> None:
    server = serve()
    stats = RequestStats()
    with pytest.raises(PolyAIAuthError) as excinfo:
        read_all(client_for(server, api_key=key), stats)
    assert excinfo.value.status == status
    assert stats.requests == 1


def test_404_for_an_unknown_project_fails_at_once(serve: Serve) -> None:
    server = serve()
    with pytest.raises(PolyAIHTTPError, match=r"HTTP 404.*unknown account or project"):
        read_all(client_for(server, project_id="no-such-project"))
    assert server.requests == 1


def test_unreachable_api_fails_after_bounded_retries() -> None:
    from tests.conftest import free_port

    client = client_for_address(f"http://127.0.0.1:{free_port()}", max_attempts=3)
    stats = RequestStats()
    with pytest.raises(PolyAITransportError, match=r"after 3 attempts.*ConnectError"):
        read_all(client, stats)
    assert (stats.requests, stats.retries) == (3, 2)


def client_for_address(base_url: str, **overrides):
    from resources.polyai_api import PolyAIClient

    return PolyAIClient(
        base_url=base_url,
        api_key="k",
        account_id="a",
        project_id="p",
        backoff_base_seconds=0.001,
        backoff_max_seconds=0.01,
        **overrides,
    )


# --- transient faults that are retried -----------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        {"rate_429": 0.3},
        {"rate_5xx": 0.3},
        {"truncate_rate": 0.3},
        {"drop_rate": 0.3},
    ],
    ids=["429", "5xx", "truncated-body", "dropped-connection"],
)
def test_transient_faults_are_retried_and_nothing_is_lost(serve: Serve, faults: dict) -> None:
    server = serve(faults={**faults, "seed": 11})
    stats = RequestStats()
    got = read_all(client_for(server, max_attempts=10), stats, QUERY.with_limit(40))
    assert [c["id"] for c in got] == [c["id"] for c in truth(server)]
    injected = sum(server.faults.injected.values())
    assert injected > 0 and stats.retries == injected
    assert stats.requests == server.requests


def test_retry_after_seconds_is_honoured(serve: Serve) -> None:
    server = serve(faults={"rate_429": 1.0, "retry_after_seconds": 1})
    stats = RequestStats()
    started = time.monotonic()
    with pytest.raises(PolyAIHTTPError, match=r"HTTP 429.*gave up after 2 attempts"):
        read_all(client_for(server, max_attempts=2), stats)
    assert stats.wait_seconds == 1.0
    assert time.monotonic() - started >= 1.0


def test_retry_after_http_date_is_honoured(serve: Serve) -> None:
    server = serve(faults={"rate_429": 1.0, "retry_after_seconds": 0, "retry_after_format": "date"})
    stats = RequestStats()
    started = time.monotonic()
    with pytest.raises(PolyAIHTTPError, match=r"HTTP 429"):
        read_all(client_for(server, max_attempts=2), stats)
    # The date is one whole second ahead (rounded): the client waited for it, not for its
    # millisecond backoff.
    assert 0.0 < stats.wait_seconds <= 1.0
    assert time.monotonic() - started >= stats.wait_seconds


def test_retry_after_is_capped(serve: Serve) -> None:
    server = serve(faults={"rate_429": 1.0, "retry_after_seconds": 3600})
    stats = RequestStats()
    with pytest.raises(PolyAIHTTPError, match=r"HTTP 429"):
        read_all(client_for(server, max_attempts=2, max_retry_after_seconds=0.2), stats)
    assert stats.wait_seconds == pytest.approx(0.2)


def test_without_retry_after_the_backoff_is_jittered_and_bounded(serve: Serve) -> None:
    server = serve(faults={"rate_5xx": 1.0, "seed": 3})
    stats = RequestStats()
    with pytest.raises(PolyAIHTTPError, match=r"HTTP 5\d\d.*gave up after 6 attempts"):
        read_all(client_for(server, backoff_base_seconds=0.01, backoff_max_seconds=0.02), stats)
    assert (stats.requests, stats.retries) == (6, 5)
    assert 0 < stats.wait_seconds <= 5 * 0.02


def test_added_latency_beyond_the_read_timeout_is_a_retried_timeout(serve: Serve) -> None:
    server = serve(faults={"latency_ms": 300})
    stats = RequestStats()
    with pytest.raises(PolyAITransportError, match="timed out"):
        read_all(client_for(server, read_timeout_seconds=0.1, max_attempts=2), stats)
    assert stats.retries == 1
    # Within the timeout, latency only slows things down.
    assert read_all(client_for(server, read_timeout_seconds=2.0)) == truth(server)


def test_rejected_cursor_surfaces_as_cursor_rejected(serve: Serve) -> None:
    server = serve(faults={"reject_cursor_rate": 1.0})
    pages = client_for(server, page_size=20).iter_pages(QUERY.with_limit(20))
    assert len(next(pages).conversations) == 20  # the first page carries no cursor
    with pytest.raises(CursorRejectedError, match=r"HTTP 400.*expired"):
        next(pages)


def test_pages_of_a_query_share_one_keep_alive_connection(serve: Serve) -> None:
    server = serve()
    pages = list(client_for(server, page_size=25).iter_pages(QUERY.with_limit(25)))
    assert len(pages) > 3
    assert server.connections == 1


def test_a_body_with_an_unpaired_surrogate_escape_is_read_not_refused() -> None:
    """orjson refuses ``"\\ud800"``; one such record must not make its page unreadable (the
    normalizer quarantines it), while a body cut short stays unreadable (and is retried)."""
    from resources.polyai_responses import lenient_json as _lenient_json

    body = _lenient_json(b'{"conversations": [{"id": "a\\ud800"}], "cursor": null}')
    assert body == {"conversations": [{"id": "a\ud800"}], "cursor": None}
    assert _lenient_json(b'{"conversations": [{"id": "a"') is None
