"""Which conversations a request selects, and in what order: the simulator's query engine.

Parsing and validating the query string, the filters, the three retrieval modes and both
pagination styles live here, apart from HTTP. Modes:

- default and ``transcript`` search: chronological (start time, then id); the cursor is a
  keyset position, so it stays stable while new conversations arrive, whereas ``offset``
  counts from the start and drifts when a late conversation lands before it;
- ``semantic`` search: ranked by a *lexical stand-in* for vector similarity (cosine of the
  query's and the transcript's word sets), ties broken chronologically; the cursor is a rank;
- ``sample=random``: up to ``limit`` conversations drawn from the range, seeded by the
  simulator's seed and the query so a repeated request returns the same sample; one page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from itertools import islice
from typing import Any

import orjson

from core import api_contract as api
from simulator.data import CHANNELS, Dataset, variant_of
from simulator.turns import without_optional_keys

_WORD = re.compile(r"\w+", re.UNICODE)
CHANNEL_FILTER_VALUES = {
    **{channel: channel for channel in CHANNELS},
    **{label: channel for channel in CHANNELS for label in api.CHANNEL_LABELS.get(channel, ())},
}
"""What ``channel=`` accepts (case-sensitively), and the internal channel each value selects:
the internal names and every analytics label, since which spelling the real filter takes is
not settled."""
FILTER_PARSE_ERROR = "GET_CONVERSATIONS_FILTER_PARSE_ERROR"
CURSOR_INVALID = "CONVERSATIONS_VALIDATION_FAILED"
ERROR_CODES = {
    HTTPStatus.BAD_REQUEST: FILTER_PARSE_ERROR,
    HTTPStatus.UNAUTHORIZED: "AUTH_USER_UNAUTHORISED",
    HTTPStatus.FORBIDDEN: "USER_ACCESS_FORBIDDEN",
    HTTPStatus.NOT_FOUND: "PROJECT_NOT_FOUND",
    HTTPStatus.TOO_MANY_REQUESTS: "RATE_LIMIT_EXCEEDED",
}
"""The ``error_code`` of an error response by status (any other: the status's own name, such
as ``INTERNAL_SERVER_ERROR`` or ``SERVICE_UNAVAILABLE``)."""


class BadRequest(Exception):
    """An error the API answers with (a refused request, a fault): its status, message and
    UPPER_SNAKE ``error_code``."""

    def __init__(self, status: HTTPStatus, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or ERROR_CODES.get(status, status.name)


def _bad(message: str, code: str = FILTER_PARSE_ERROR) -> BadRequest:
    return BadRequest(HTTPStatus.BAD_REQUEST, message, code)


def encode_cursor(*parts: object) -> str:
    raw = "|".join(str(p) for p in parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def restart_cursor(cursor: str | None, nonce: int) -> str:
    """A new cursor for the position ``cursor`` (None: the first page) itself starts at: what
    an API hands out when a page must be read again, or after an empty page."""
    if cursor is None:
        return encode_cursor("k", "0", "", nonce)
    parts = decode_cursor(cursor)
    return encode_cursor(*parts[:3], nonce)


def decode_cursor(cursor: str) -> tuple[str, ...]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _bad(f"malformed cursor {cursor!r}", CURSOR_INVALID) from None
    return tuple(raw.split("|"))


@dataclass(frozen=True)
class Request:
    environment: str
    channels: list[str]
    """Internal channel names."""
    start: datetime
    end: datetime
    limit: int
    cursor: str | None
    offset: int
    variant_id: str | None
    variant_name: str | None
    in_progress: bool | None
    include_latency: bool
    include_turn_metadata: bool
    query_type: str | None
    query: str | None
    turn_type: str | None
    sample: str | None
    project_id: str | None = None
    """The project of the request's path (set by the server): it may be the one whose
    transcripts are hidden."""

    @property
    def ranked(self) -> bool:
        return self.query_type == "semantic"


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise _bad(f"{name} may be given only once")
    return values[0]


def _timestamp(query: dict[str, list[str]], name: str) -> datetime:
    value = _one(query, name)
    if value is None:
        raise _bad(f"{name} is required")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"{name} {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise _bad(f"{name} {value!r} has no time zone offset")
    return moment


def _int(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int | None) -> int:
    value = _one(query, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _bad(f"{name} {value!r} is not an integer") from None
    if number < lo or (hi is not None and number > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise _bad(f"{name} must be {bound}, got {number}")
    return number


def _bool(query: dict[str, list[str]], name: str) -> bool | None:
    value = _one(query, name)
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        raise _bad(f"{name} must be true or false, got {value!r}")
    return value.lower() == "true"


def _choice(query: dict[str, list[str]], name: str, allowed: tuple[str, ...]) -> str | None:
    value = _one(query, name)
    if value is not None and value not in allowed:
        raise _bad(f"{name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _channels(query: dict[str, list[str]]) -> list[str]:
    """The internal channels the (repeatable) ``channel`` filter selects: all when absent."""
    values = query.get(api.P_CHANNEL) or list(CHANNELS)
    unknown = [value for value in values if value not in CHANNEL_FILTER_VALUES]
    if unknown:
        raise _bad(
            f"{api.P_CHANNEL} {unknown[0]!r} is not one of {', '.join(CHANNEL_FILTER_VALUES)}"
        )
    return sorted({CHANNEL_FILTER_VALUES[value] for value in values})


def parse_request(query: dict[str, list[str]]) -> Request:
    """The validated request, or :class:`BadRequest` with a message naming the problem."""
    environment = _choice(query, api.P_CLIENT_ENV, api.ENVIRONMENTS) or api.DEFAULT_ENVIRONMENT
    start = _timestamp(query, api.P_START_TIME)
    end = _timestamp(query, api.P_END_TIME)
    if start >= end:
        raise _bad(f"{api.P_START_TIME} must be before {api.P_END_TIME}")
    cursor = _one(query, api.P_CURSOR)
    offset = _int(query, api.P_OFFSET, 0, 0, None)
    if cursor is not None and offset:
        raise _bad("give either cursor or offset, not both")
    variant_id, variant_name = _one(query, api.P_VARIANT_ID), _one(query, api.P_VARIANT_NAME)
    if variant_id is not None and variant_name is not None:
        raise _bad("you may only specify either one of variant_id or variant_name")
    query_type = _choice(query, api.P_QUERY_TYPE, api.QUERY_TYPES)
    text = _one(query, api.P_QUERY)
    sample = _choice(query, api.P_SAMPLE, api.SAMPLE_MODES)
    turn_type = _choice(query, api.P_TURN_TYPE, api.TURN_TYPES)
    if query_type is not None and not text:
        raise _bad(f"{api.P_QUERY} is required when {api.P_QUERY_TYPE} is set")
    if text and query_type is None:
        raise _bad(f"{api.P_QUERY} is only used with {api.P_QUERY_TYPE}")
    if query_type is not None and sample is not None:
        raise _bad(f"{api.P_QUERY_TYPE} and {api.P_SAMPLE} are mutually exclusive")
    if turn_type is not None and query_type != "transcript":
        raise _bad(f"{api.P_TURN_TYPE} applies to transcript search only")
    return Request(
        environment=environment,
        channels=_channels(query),
        start=start,
        end=end,
        limit=_int(query, api.P_LIMIT, api.MAX_LIMIT, api.MIN_LIMIT, api.MAX_LIMIT),
        cursor=cursor,
        offset=offset,
        variant_id=variant_id,
        variant_name=variant_name,
        in_progress=_bool(query, api.P_IN_PROGRESS),
        include_latency=bool(_bool(query, api.P_INCLUDE_LATENCY)),
        include_turn_metadata=bool(_bool(query, api.P_INCLUDE_TURN_METADATA)),
        query_type=query_type,
        query=text,
        turn_type=turn_type,
        sample=sample,
    )


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def similarity(query: str, conversation: dict[str, Any]) -> float:
    """The lexical stand-in for semantic similarity: cosine of two word sets."""
    wanted = words(query)
    text = " ".join(
        f"{t['user_input']} {t['agent_response']} {t['translated_user_input']} "
        f"{t['english_agent_response']}"
        for t in conversation["turns"]
    )
    have = words(text)
    if not wanted or not have:
        return 0.0
    return len(wanted & have) / math.sqrt(len(wanted) * len(have))


def _transcript_match(request: Request, conversation: dict[str, Any]) -> bool:
    needle = (request.query or "").casefold()
    fields = {
        None: ("user_input", "agent_response"),
        "user": ("user_input",),
        "agent": ("agent_response",),
    }[request.turn_type]
    return any(needle in turn[f].casefold() for turn in conversation["turns"] for f in fields)


class Selection:
    """One request's answer over a dataset."""

    def __init__(self, dataset: Dataset, request: Request, serialized: bool = True) -> None:
        self.dataset = dataset
        self.request = request
        self.serialized = serialized
        """Conversations no filter had to build are served as cached JSON fragments; off
        when the server alters records before sending them."""

    def _matches(self, key: tuple[int, str, str]) -> tuple[bool, dict[str, Any] | None]:
        """Whether the conversation at ``key`` passes the filters, and its body if building
        it was needed to tell (bodies are built only for filters that read them)."""
        r = self.request
        if r.variant_id is not None or r.variant_name is not None:
            variant_id, variant_name = variant_of(self.dataset.config.seed, key[1])
            if r.variant_id not in (None, variant_id) or r.variant_name not in (None, variant_name):
                return False, None
        if r.in_progress is None and r.query_type is None:
            return True, None
        conversation = self._body(key)
        if r.in_progress is not None and conversation["in_progress"] != r.in_progress:
            return False, None
        if r.query_type == "transcript" and not _transcript_match(r, conversation):
            return False, None
        return True, conversation

    def _body(self, key: tuple[int, str, str]) -> dict[str, Any]:
        r = self.request
        return self.dataset.conversation(
            r.environment, key[2], key[0], key[1], r.include_turn_metadata, r.project_id
        )

    def _chronological(
        self, after: tuple[int, str] | None
    ) -> Iterator[tuple[tuple, dict[str, Any] | None]]:
        r = self.request
        for key in self.dataset.keys_in(r.environment, r.channels, r.start, r.end, after):
            matched, conversation = self._matches(key)
            if matched:
                yield key, conversation

    def _bodies(self, found: list[tuple[tuple, dict[str, Any] | None]]) -> list[Any]:
        if not self.serialized:
            return [c if c is not None else self._body(key) for key, c in found]
        r = self.request
        return [
            c
            if c is not None
            else orjson.Fragment(
                self.dataset.conversation_json(
                    r.environment,
                    key[2],
                    key[0],
                    key[1],
                    r.include_latency,
                    r.include_turn_metadata,
                    r.project_id,
                )
            )
            for key, c in found
        ]

    def _ranked(self) -> list[tuple[tuple, dict]]:
        scored = []
        for key, body in self._chronological(None):
            conversation = body if body is not None else self._body(key)
            score = similarity(self.request.query or "", conversation)
            if score > 0:
                scored.append((-score, key, conversation))
        scored.sort(key=lambda item: (item[0], item[1]))
        return [(key, conversation) for _, key, conversation in scored]

    def body(self) -> dict[str, Any]:
        r = self.request
        if r.sample is not None:
            page, more, next_cursor = self._sample(), False, None
        elif r.ranked:
            page, more, next_cursor = self._ranked_page()
        else:
            page, more, next_cursor = self._chronological_page()
        body: dict[str, Any] = {
            api.R_CONVERSATIONS: [
                c
                if isinstance(c, orjson.Fragment)
                else without_optional_keys(c, r.include_latency, r.include_turn_metadata)
                for c in page
            ],
            api.R_CURSOR: next_cursor if more else None,
        }
        if more and r.cursor is None:
            # Offset pagination's marker; a position counted from a cursor would be meaningless.
            body[api.R_NEXT_OFFSET] = r.offset + len(page)
        return body

    def _chronological_page(self) -> tuple[list[dict], bool, str | None]:
        r = self.request
        after = None
        if r.cursor is not None:
            parts = decode_cursor(r.cursor)
            if len(parts) not in (3, 4) or parts[0] != "k" or not parts[1].isdigit():
                raise _bad(f"malformed cursor {r.cursor!r}", CURSOR_INVALID)
            after = (int(parts[1]), parts[2])
        found = islice(self._chronological(after), r.offset, r.offset + r.limit + 1)
        window = list(found)
        page = window[: r.limit]
        more = len(window) > r.limit
        last = page[-1][0] if page else None
        cursor = encode_cursor("k", last[0], last[1]) if last else None
        return self._bodies(page), more, cursor

    def _ranked_page(self) -> tuple[list[dict], bool, str | None]:
        r = self.request
        position = r.offset
        if r.cursor is not None:
            parts = decode_cursor(r.cursor)
            if len(parts) != 2 or parts[0] != "r" or not parts[1].isdigit():
                raise _bad(f"malformed cursor {r.cursor!r}", CURSOR_INVALID)
            position = int(parts[1])
        ranked = self._ranked()
        page = ranked[position : position + r.limit]
        more = position + r.limit < len(ranked)
        return [c for _, c in page], more, encode_cursor("r", position + r.limit)

    def _sample(self) -> list[dict]:
        r = self.request
        population = list(self._chronological(None))
        fingerprint = hashlib.blake2b(
            f"{self.dataset.config.seed}|{r.environment}|{r.channels}|{r.start}|{r.end}".encode(),
            digest_size=8,
        ).digest()
        rng = random.Random(int.from_bytes(fingerprint, "big"))
        chosen = sorted(rng.sample(range(len(population)), k=min(r.limit, len(population))))
        return self._bodies([population[i] for i in chosen])
