"""Reading one PolyAI API response: its body within a deadline and a size, then as JSON.

A body is read (inflated) to the end within ``POLYAI_REQUEST_DEADLINE_SECONDS`` and a byte
limit, so a server that sends a byte a second, or a small gzip body that inflates without end,
is stopped rather than waited for. JSON is read by orjson, except where it would lose
something: integers beyond 64 bits and unpaired surrogate escapes go to Python's own parser.
A body cut short reads as bad JSON and is retried (:class:`_Transient`), on new connections
(:class:`Connection`); a body that is too large, undecodable or nested too deeply is a
:class:`PolyAIResponseError`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson

from core import api_contract as api
from core.env import Env
from core.query import ConversationQuery
from resources.polyai_errors import PolyAIResponseError, _Transient


@dataclass
class RequestStats:
    """What talking to the API cost: the sync reports these as Dagster metadata."""

    requests: int = 0
    retries: int = 0
    wait_seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, other: RequestStats) -> None:
        self.requests += other.requests
        self.retries += other.retries
        self.wait_seconds += other.wait_seconds
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count


@dataclass(frozen=True)
class Page:
    """One page of a query: its conversations and the position of the page after it."""

    number: int
    conversations: list[dict[str, Any]]
    next_cursor: str | None


class Connection:
    """The HTTP client a query's pages are read with, made again (new connections) after an
    answer was cut short or unreadable: bytes it left on a kept-alive connection would be read
    as the next answer."""

    def __init__(self, make: Callable[[], httpx.Client]) -> None:
        self._make = make
        self.client = make()

    def fresh(self) -> None:
        self.client.close()
        self.client = self._make()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()


SLOW_NOTICE_SECONDS = 30.0
"""An answer still arriving after this long is said (it may take until its deadline)."""
_log = logging.getLogger("resources.polyai_api")  # the client's: its lines go where its go


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for every window's client: building one loads the system's
    CA bundle, ~20 ms, which a backfill would otherwise pay once per window."""
    return httpx.create_ssl_context()


def read_body(
    http: httpx.Client,
    url: str,
    query: ConversationQuery,
    *,
    deadline_seconds: float,
    max_bytes: int,
) -> tuple[httpx.Response, bytes]:
    """One GET, its body read (inflated) to the end within ``deadline_seconds`` and
    ``max_bytes``."""
    deadline = time.monotonic() + deadline_seconds
    with http.stream("GET", url) as response:
        chunks = []
        try:
            for chunk in _chunks(response, deadline, query, deadline_seconds, max_bytes):
                chunks.append(chunk)
        except httpx.DecodingError:
            raise PolyAIResponseError(
                f"response for {query.describe()} cannot be read as its Content-Encoding "
                f"({response.headers.get('content-encoding')!r}) says"
            ) from None
    return response, b"".join(chunks)


def _chunks(
    response: httpx.Response,
    deadline: float,
    query: ConversationQuery,
    deadline_seconds: float,
    max_bytes: int,
) -> Iterator[bytes]:
    size, noticed = 0, False
    for chunk in response.iter_bytes():
        size += len(chunk)
        left = deadline - time.monotonic()  # (one clock read a chunk, for both checks)
        if not noticed and deadline_seconds - left > SLOW_NOTICE_SECONDS:
            noticed = True
            _log.warning(
                f"{query.describe()}: the answer is still arriving after "
                f"{SLOW_NOTICE_SECONDS:g}s ({size:,} bytes so far); cut off "
                f"{max(left, 0):.0f}s from now ({Env.POLYAI_REQUEST_DEADLINE_SECONDS})"
            )
        if size > max_bytes:
            raise PolyAIResponseError(
                f"response for {query.describe()} is larger than "
                f"{max_bytes:,} bytes (inflated); lower {Env.POLYAI_PAGE_SIZE}"
            )
        if left < 0:
            raise _Transient(
                f"the response took longer than {deadline_seconds:g}s "
                f"({Env.POLYAI_REQUEST_DEADLINE_SECONDS}); {size:,} bytes had arrived"
            )
        yield chunk


class Turn(Protocol):
    """What :meth:`PolyAIClient.iter_pages` takes as a page's turn: a semaphore."""

    def acquire(self) -> Any: ...
    def release(self) -> None: ...


@contextlib.contextmanager
def released_on_error(turn: Turn | None) -> Iterator[None]:
    """``turn`` given back if what the block does with the page fails."""
    try:
        yield
    except BaseException:
        if turn is not None:
            turn.release()
        raise


def parse_page_body(
    content: bytes, query: ConversationQuery, scrub: Callable[[str], str]
) -> dict[str, Any]:
    """A 200's body as the JSON object it must be; one that says it failed (often with an
    empty page) is not an empty window."""
    body = parse_body(content, query)
    if not isinstance(body, dict):
        raise PolyAIResponseError(f"response for {query.describe()} is not a JSON object")
    error = body.get("error")
    if error not in (None, "", {}, []):
        said = scrub(str(error))
        raise PolyAIResponseError(
            f"response for {query.describe()} is a 200 carrying an error: {said[:300]}"
        )
    return body


def parse_body(content: bytes, query: ConversationQuery) -> Any:
    """The body as JSON; integers beyond 64 bits kept exact (orjson reads them as floats,
    so a body holding a 19-digit run is read by Python's parser)."""
    try:
        if _LONG_DIGIT_RUN.search(content) is None:
            try:
                return orjson.loads(content)
            except orjson.JSONDecodeError as exc:
                if "depth" in str(exc):
                    raise RecursionError(str(exc)) from None
        body = lenient_json(content)
    except RecursionError:
        raise PolyAIResponseError(
            f"response for {query.describe()} is nested more deeply than JSON parsers read"
        ) from None
    if body is None:
        # A body cut short on the wire reads as bad JSON: worth another try.
        raise _Transient("unreadable response body (not JSON)")
    return body


_LONG_DIGIT_RUN = re.compile(rb"\d{19}")
"""19 digits in a row: maybe an integer beyond 64 bits (or only a long digit string)."""


def lenient_json(content: bytes) -> Any:
    """The body as Python's own parser reads it (None if it cannot; ``RecursionError`` if it
    nests beyond the interpreter's limit): unlike orjson it takes an unpaired surrogate
    escape (``"\\ud800"``) in a string, so one such record does not make its whole page
    unreadable (the normalizer quarantines it), and integers of any size."""
    try:
        return json.loads(content)
    except ValueError:
        return None


@dataclass(frozen=True)
class ErrorBody:
    """What an error response says, each part already scrubbed of the key."""

    message: str
    code: str | None
    error_id: str | None
    host: str
    """The API host (and port) the request went to: where a 404 says to look."""


_ERROR_TEXT_CHARS = 500
_ERROR_BODY_PREFIX = 64 * 1024
"""Of a body that is not the envelope, only this much is decoded and scrubbed; then the start
of what is left is shown."""
_FASTAPI_DETAIL = "detail"  # what the bundled simulator (and FastAPI servers) send


def read_error(response: httpx.Response, content: bytes, scrub: Callable[[str], str]) -> ErrorBody:
    """What an error response says: PolyAI's published envelope (``error_message``, else
    ``error``, else a FastAPI-style ``detail``, else the start of the body; ``error_code``;
    ``error_id``, else the correlation id header). Every part goes through ``scrub`` before
    it is cut short, so a key echoed where it is cut cannot leave a piece of itself behind."""
    try:
        body = lenient_json(content)
    except RecursionError:
        body = None
    said = body if isinstance(body, dict) else {}
    keys = (api.E_ERROR_MESSAGE, api.E_ERROR, _FASTAPI_DETAIL)
    message = next((text for key in keys if (text := _text(said.get(key)))), None)
    if message is None:
        start = content[:_ERROR_BODY_PREFIX].decode("utf-8", "replace").strip()
        message = start or response.reason_phrase or "(no body)"
    error_id = _text(said.get(api.E_ERROR_ID)) or _text(
        response.headers.get(api.CORRELATION_ID_HEADER)
    )
    url = response.request.url
    host = f"{url.host}:{url.port}" if url.port else url.host
    return ErrorBody(
        message=_cut(scrub(message)),
        code=_cut(scrub(code), 100) if (code := _text(said.get(api.E_ERROR_CODE))) else None,
        error_id=_cut(scrub(error_id), 200) if error_id else None,
        host=scrub(host),
    )


def _text(value: Any) -> str | None:
    """A field as text, or None when it is absent or empty."""
    if value is None or value in ("", [], {}):
        return None
    text = value.strip() if isinstance(value, str) else str(value)
    return text or None


def _cut(text: str, chars: int = _ERROR_TEXT_CHARS) -> str:
    return text if len(text) <= chars else f"{text[:chars]}..."


def scrub_key(text: str, key: str) -> str:
    """``text`` without ``key``: whole, as sent or as a URL or a JSON string would write it,
    and cut short at the end of ``text`` (a body shown only in part)."""
    if not key:
        return text
    for form in {key, quote(key, safe=""), json.dumps(key)[1:-1], key.replace("/", "\\/")}:
        text = text.replace(form, "***")
    for size in range(len(key) - 1, 3, -1):
        if text.endswith(key[:size]):
            return f"{text[:-size]}***"
    return text
