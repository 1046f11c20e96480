"""The client against PolyAI's published error envelope, over real HTTP (tests/canned_server).

The bodies are the examples of PolyAI's OpenAPI file, not the simulator's: every error shows
the server's ``error_code``, message and ``error_id`` (the correlation id support asks for),
names the likely cause of a 401 or 404, and never the key, even when the server echoes it.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from core import api_contract as api
from core.windows import Scope, daily_window
from resources.polyai_api import (
    CursorRejectedError,
    PolyAIAuthError,
    PolyAIClient,
    PolyAIHTTPError,
    PolyAIUnavailableError,
)
from resources.polyai_responses import scrub_key
from tests.canned_server import (
    PUBLISHED_400_BODY,
    PUBLISHED_404_BODY,
    PUBLISHED_ACCOUNT_ID,
    PUBLISHED_ERROR_ID,
    PUBLISHED_PATH,
    PUBLISHED_PROJECT_ID,
    CannedServer,
    envelope_reply,
    json_reply,
    published_page,
    text_reply,
)
from tests.conftest import SYNC_DAY

KEY = "sk-canned-VERYSECRET/4e7a+b91="
"""Distinctive, and with characters a URL encodes, so an encoded echo differs from it."""
LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)
ATTEMPTS = 3


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    with CannedServer() as server:
        yield server


def client_of(canned: CannedServer, **overrides: Any) -> PolyAIClient:
    """A client of the canned server with fast retries (as tests/conftest.py ``client_for``)."""
    settings: dict[str, Any] = {
        "base_url": canned.base_url,
        "api_key": KEY,
        "account_id": PUBLISHED_ACCOUNT_ID,
        "project_id": PUBLISHED_PROJECT_ID,
        "page_size": 100,
        "max_attempts": ATTEMPTS,
        "backoff_base_seconds": 0.001,
        "backoff_max_seconds": 0.01,
        "read_timeout_seconds": 5.0,
    }
    settings.update(overrides)
    return PolyAIClient(**settings)


def raised(canned: CannedServer, **overrides: Any) -> PolyAIHTTPError:
    """The error the client raises reading the window's first page."""
    with pytest.raises(PolyAIHTTPError) as info:
        next(client_of(canned, **overrides).iter_window(LIVE_VOICE, WINDOW))
    return info.value


def host_of(canned: CannedServer) -> str:
    return canned.base_url.removeprefix("http://")


def envelope(status_code: str, message: str, error_id: str | None = None) -> dict[str, Any]:
    body = {"success": False, "error": message, "error_code": status_code}
    body.update({"error_message": message, "data": None})
    if error_id is not None:
        body["error_id"] = error_id
    return body


def test_the_canned_server_serves_the_published_page_to_the_client(canned: CannedServer) -> None:
    canned.always(json_reply(200, published_page()))
    pages = list(client_of(canned).iter_window(LIVE_VOICE, WINDOW))
    assert [page.conversations for page in pages] == [published_page()["conversations"]]
    assert pages[0].next_cursor is None
    (request,) = canned.requests
    assert request.path.startswith(f"{PUBLISHED_PATH}?")
    assert f"{api.P_CLIENT_ENV}=live" in request.path
    assert request.headers[api.API_KEY_HEADER] == KEY


def test_the_published_400_shows_its_code_message_and_error_id(canned: CannedServer) -> None:
    canned.always(envelope_reply(400, PUBLISHED_400_BODY))
    error = raised(canned)
    assert type(error) is PolyAIHTTPError and error.status == 400
    assert error.error_code == "GET_CONVERSATIONS_FILTER_PARSE_ERROR"
    assert error.error_message == error.detail == "Filter expression syntax is invalid."
    assert error.error_id == PUBLISHED_ERROR_ID
    assert str(error).startswith(
        "PolyAI API returned HTTP 400 GET_CONVERSATIONS_FILTER_PARSE_ERROR for live "
    )
    assert (
        f": Filter expression syntax is invalid. (error_id {PUBLISHED_ERROR_ID}, quote it to "
        "PolyAI support)" in str(error)
    )
    assert len(canned.requests) == 1  # a 400 is not retried


def test_a_400_on_a_cursor_is_rejected_with_its_envelope(canned: CannedServer) -> None:
    canned.always(envelope_reply(400, envelope("INVALID_CURSOR", "Cursor is malformed.", "c-1")))
    client = client_of(canned)
    with pytest.raises(CursorRejectedError) as info:
        next(client.iter_window(LIVE_VOICE, WINDOW, start_cursor="not-a-cursor"))
    assert (info.value.error_code, info.value.error_id) == ("INVALID_CURSOR", "c-1")
    assert "HTTP 400 INVALID_CURSOR" in str(info.value) and "error_id c-1" in str(info.value)


def test_the_published_404_names_the_ids_and_the_host(canned: CannedServer) -> None:
    canned.always(envelope_reply(404, PUBLISHED_404_BODY))
    error = raised(canned)
    message = str(error)
    assert (error.status, error.error_code, error.error_id) == (
        404,
        "PROJECT_NOT_FOUND",
        PUBLISHED_ERROR_ID,
    )
    assert "HTTP 404 PROJECT_NOT_FOUND for " in message
    assert "Project ID does not exist." in message
    assert "POLYAI_ACCOUNT_ID" in message and "POLYAI_PROJECT_ID" in message
    assert host_of(canned) in message and error.host == host_of(canned)
    assert api.WRONG_HOST_HINT not in message  # the API answered: the host is right enough


def test_a_404_without_an_envelope_names_the_host(canned: CannedServer) -> None:
    canned.always(text_reply(404, "404 page not found"))
    error = raised(canned)
    assert (error.status, error.error_code, error.error_id) == (404, None, None)
    assert error.detail == "404 page not found"
    assert api.WRONG_HOST_HINT in str(error) and host_of(canned) in str(error)
    assert "POLYAI_PROJECT_ID" not in str(error)


def test_without_an_error_id_the_correlation_header_is_read_whatever_its_case(
    canned: CannedServer,
) -> None:
    canned.always(text_reply(404, "Not Found", {"x-polyai-correlation-id": "corr-77"}))
    error = raised(canned)
    assert error.error_id == "corr-77"
    assert "(error_id corr-77, quote it to PolyAI support)" in str(error)


def test_a_401_names_the_region(canned: CannedServer) -> None:
    body = envelope("AUTH_USER_UNAUTHORISED", "Invalid credentials.", "id-401")
    canned.always(envelope_reply(401, body))
    error = raised(canned)
    assert isinstance(error, PolyAIAuthError) and error.status == 401
    assert "HTTP 401 AUTH_USER_UNAUTHORISED" in str(error) and "Invalid credentials." in str(error)
    assert "another region" in str(error)
    assert "POLYAI_REGION" in str(error) and "POLYAI_BASE_URL" in str(error)
    assert host_of(canned) in str(error)
    assert len(canned.requests) == 1


def test_a_403_keeps_the_key_ids_and_region_hint(canned: CannedServer) -> None:
    canned.always(envelope_reply(403, envelope("USER_ACCESS_FORBIDDEN", "Forbidden.", "id-403")))
    error = raised(canned)
    assert isinstance(error, PolyAIAuthError)
    for name in ("POLYAI_API_KEY", "POLYAI_ACCOUNT_ID", "POLYAI_PROJECT_ID", "POLYAI_REGION"):
        assert name in str(error)
    assert "error_id id-403" in str(error)


def test_a_500_on_every_attempt_shows_its_code_and_the_header_correlation_id(
    canned: CannedServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = envelope("INTERNAL_SERVER_ERROR", "Something went wrong.")  # no error_id
    canned.always(json_reply(500, body, {"X-PolyAI-Correlation-Id": "corr-500"}))
    with caplog.at_level(logging.WARNING, logger="resources.polyai_api"):
        error = raised(canned)
    assert isinstance(error, PolyAIUnavailableError) and error.transient
    assert (error.status, error.error_code, error.error_id) == (
        500,
        "INTERNAL_SERVER_ERROR",
        "corr-500",
    )
    assert error.error_message == "Something went wrong."  # the server's words alone
    assert "HTTP 500 INTERNAL_SERVER_ERROR" in str(error)
    assert f"gave up after {ATTEMPTS} attempts" in str(error)
    assert "(error_id corr-500, quote it to PolyAI support)" in str(error)
    assert len(canned.requests) == ATTEMPTS
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == ATTEMPTS - 1
    assert all("HTTP 500 INTERNAL_SERVER_ERROR" in line for line in retries)
    assert all("corr-500" in line for line in retries)


def test_an_error_keeps_its_envelope_across_a_process_boundary(canned: CannedServer) -> None:
    canned.always(envelope_reply(404, PUBLISHED_404_BODY))
    error = raised(canned)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)
    assert (copy.error_code, copy.error_id, copy.error_message, copy.host) == (
        error.error_code,
        error.error_id,
        error.error_message,
        error.host,
    )


def everything_about(error: PolyAIHTTPError) -> str:
    attributes = [f"{name}={value!r}" for name, value in vars(error).items()]
    return "\n".join([str(error), repr(error), error.error_message, *attributes])


@pytest.mark.parametrize("status", [400, 401, 404, 500])
def test_an_echoed_key_appears_in_no_error_and_no_log_record(
    canned: CannedServer, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    body = envelope(f"BAD_KEY_{KEY}", f"Key {KEY} (or {quote(KEY, safe='')}) refused.", KEY)
    canned.always(json_reply(status, body))
    with caplog.at_level(logging.DEBUG):  # every logger, httpx and httpcore included
        error = raised(canned)
    assert error.status == status and error.error_code == "BAD_KEY_***"
    assert error.error_message == "Key *** (or ***) refused." and error.error_id == "***"
    logged = [r.getMessage() for r in caplog.records] + [caplog.text]
    if status == 500:
        assert any("retrying" in line and "BAD_KEY_***" in line for line in logged)
    for text in (everything_about(error), *logged):
        assert KEY not in text and quote(KEY, safe="") not in text


def test_a_key_echoed_in_the_correlation_header_is_scrubbed(canned: CannedServer) -> None:
    """(Not searched for in log records: httpcore's DEBUG log prints response headers.)"""
    canned.always(text_reply(404, "no such route", {"X-PolyAI-Correlation-Id": f"id-{KEY}"}))
    error = raised(canned)
    assert error.error_id == "id-***"
    assert KEY not in everything_about(error)


def test_a_key_cut_short_at_the_end_of_a_text_is_scrubbed() -> None:
    """Only the start of a long error body is shown: a key cut there leaves no piece."""
    assert scrub_key(f"echo: {KEY[:12]}", KEY) == "echo: ***"
    assert scrub_key(f"echo: {KEY} and more", KEY) == "echo: *** and more"
    assert scrub_key("sk-", KEY) == "sk-"  # three characters say nothing of a key
