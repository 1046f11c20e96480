"""Reading one PolyAI API response: its body within a deadline and a size, then as JSON.

A body is read (inflated) to the end within ``POLYAI_REQUEST_DEADLINE_SECONDS`` and a byte
limit, so a server that sends a byte a second, or a small gzip body that inflates without end,
is stopped rather than waited for. JSON is read by orjson, except where it would lose
something: integers beyond 64 bits and unpaired surrogate escapes go to Python's own parser.
A body cut short reads as bad JSON and is retried (:class:`_Transient`); a body that is too
large, undecodable or nested too deeply is a :class:`PolyAIResponseError`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from core.env import Env
from core.query import ConversationQuery
from resources.polyai_errors import PolyAIResponseError, _Transient


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
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise PolyAIResponseError(
                f"response for {query.describe()} is larger than "
                f"{max_bytes:,} bytes (inflated); lower {Env.POLYAI_PAGE_SIZE}"
            )
        if time.monotonic() > deadline:
            raise _Transient(
                f"the response took longer than {deadline_seconds:g}s "
                f"({Env.POLYAI_REQUEST_DEADLINE_SECONDS}); {size:,} bytes had arrived"
            )
        yield chunk


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


def error_detail(response: httpx.Response, content: bytes) -> str:
    """What an error response says: its JSON ``detail``, else the start of its body."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return content[:500].decode("utf-8", "replace") or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500]
