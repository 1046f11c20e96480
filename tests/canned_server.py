"""A tiny loopback HTTP server that answers with canned responses copied from PolyAI's docs.

Unlike the bundled simulator (:mod:`simulator`), nothing here is shaped by this project: the
error bodies are the examples of PolyAI's published OpenAPI file
(``PolyAI-LDN/polyai-mintlify-doc``, ``api-reference/conversations/v3/openapi.json``), and
:func:`published_page` is one page of the list endpoint written by hand from that file's
``ConversationSummaryResponse`` and ``ConversationTurn`` schemas and the Conversations API
guide (``api-reference/conversations/introduction.mdx``). Use it to check the client against
what PolyAI says it sends::

    with CannedServer() as canned:
        canned.queue(envelope_reply(404, PUBLISHED_404_BODY))
        client = PolyAIClient(base_url=canned.base_url, ...)
        ...
        canned.requests[0].path  # '/v3/ws-.../PROJECT-.../conversations?client_env=live&...'

Replies come from the queue first (:meth:`CannedServer.queue`), then from the responder, a
function from a :class:`Received` request to a :data:`Reply` (:meth:`CannedServer.respond`);
with neither, the server answers 501 so that a test sees it asked for nothing.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Reply = tuple[int, dict[str, str], bytes]
"""What the server sends: status, headers, body bytes (Content-Length is added)."""

PUBLISHED_ERROR_ID = "550e8400-e29b-41d4-a716-446655440000"
"""The ``error_id`` of every published error example."""

PUBLISHED_400_BODY: dict[str, Any] = {
    "success": False,
    "error": "Filter expression syntax is invalid.",
    "error_id": "550e8400-e29b-41d4-a716-446655440000",
    "error_code": "GET_CONVERSATIONS_FILTER_PARSE_ERROR",
    "error_message": "Filter expression syntax is invalid.",
    "data": None,
}
"""The published example of a 400 of ``GET /v3/{account_id}/{project_id}/conversations``."""

PUBLISHED_404_BODY: dict[str, Any] = {
    "success": False,
    "error": "Project ID does not exist.",
    "error_id": "550e8400-e29b-41d4-a716-446655440000",
    "error_code": "PROJECT_NOT_FOUND",
    "error_message": "Project ID does not exist.",
    "data": None,
}
"""The published example of a 404 of ``GET /v3/{account_id}/{project_id}/conversations``."""

CORRELATION_HEADER = "X-PolyAI-Correlation-Id"
"""The header whose value a published error body repeats as ``error_id``."""


@dataclass(frozen=True)
class Received:
    """One request the server received."""

    method: str
    path: str
    """The path with its query string, as sent."""
    headers: dict[str, str]
    """The request's headers, names lower-cased."""


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    """``body`` as a JSON response."""
    return status, {"Content-Type": "application/json", **(headers or {})}, _json(body)


def envelope_reply(status: int, body: dict[str, Any], correlation_id: bool = True) -> Reply:
    """A published error envelope, with the ``X-PolyAI-Correlation-Id`` header equal to its
    ``error_id`` as PolyAI sends it (``correlation_id=False``: without the header)."""
    headers = {CORRELATION_HEADER: str(body["error_id"])} if correlation_id else {}
    return json_reply(status, body, headers)


def text_reply(status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
    """A plain-text response (an error page from something in between)."""
    return status, {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}, text.encode()


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


class CannedServer:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) in a daemon thread; a context
    manager. Every request is recorded in :attr:`requests` and answered from the queue, else
    by the responder."""

    def __init__(self, responder: Callable[[Received], Reply] | None = None) -> None:
        self.requests: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._responder = responder
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.canned = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"

    def queue(self, *replies: Reply) -> CannedServer:
        """Answer the next requests with ``replies``, in order."""
        with self._lock:
            self._replies.extend(replies)
        return self

    def respond(self, responder: Callable[[Received], Reply]) -> CannedServer:
        """Answer with ``responder(request)`` whenever the queue is empty."""
        self._responder = responder
        return self

    def always(self, reply: Reply) -> CannedServer:
        """Answer every request (once the queue is empty) with ``reply``."""
        return self.respond(lambda _request: reply)

    def reply_to(self, request: Received) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._replies:
                return self._replies.popleft()
        if self._responder is not None:
            return self._responder(request)
        return text_reply(501, "canned server: no response was set for this request")

    def start(self) -> CannedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> CannedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client uses one connection per query

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        received = Received(self.command, self.path, headers)
        status, reply_headers, body = self.server.canned.reply_to(received)  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in reply_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the requests are in :attr:`CannedServer.requests`."""


# One page of the list endpoint, in the published shape.

PUBLISHED_ACCOUNT_ID = "ws-fd112d8f"
"""The guide's example workspace id (``account_id``)."""
PUBLISHED_PROJECT_ID = "PROJECT-58RP822I"
"""The guide's example agent id (``project_id``)."""
PUBLISHED_PATH = f"/v3/{PUBLISHED_ACCOUNT_ID}/{PUBLISHED_PROJECT_ID}/conversations"

CALL_WITH_TURNS_ID = "CA3f9a1c07be5d4e2a8c6b1d0e9f7a5c31"
WEBCHAT_ID = "CH8b2e4d6f0a1c3e5b7d9f2a4c6e8b0d13"
CHAT_ID = "CH1d3f5b7a9c2e4d6f8a0b2c4e6d8f0a25"
CALL_WITHOUT_TURNS_ID = "CA7c5e3a1f9d8b6c4e2a0f8d6b4c2e0a47"


def published_page() -> dict[str, Any]:
    """One page (``cursor`` null: the last) of 4 conversations on 2026-11-20, ``live``: a
    VOICE-SIP call with 2 turns, float latencies in seconds, turn metadata on one turn, a
    list-valued metric and a handoff; a WEBCHAT chat with only the required fields and its
    turn; a CHAT-labelled chat; a VOICE-SIP call whose 3 turns are hidden (``turns: []``,
    transcript access off). A new copy on each call."""
    return {
        "conversations": [_call_with_turns(), _webchat(), _chat(), _call_without_turns()],
        "cursor": None,
    }


def _required(ident: str, started_at: str, channel: str) -> dict[str, Any]:
    return {
        "id": ident,
        "account_id": PUBLISHED_ACCOUNT_ID,
        "project_id": PUBLISHED_PROJECT_ID,
        "environment": "live",
        "started_at": started_at,
        "channel": channel,
        "in_progress": False,
    }


def _call_with_turns() -> dict[str, Any]:
    greeting = {
        "user_input": "Hi, I'd like to move my booking to Friday for Alex and Sam",
        "user_input_dtmf": "",
        "user_input_datetime": "2026-11-20T09:00:05.12677Z",
        "agent_response": "Of course. Which time on Friday would suit you?",
        "agent_response_datetime": "2026-11-20T09:00:05.86877Z",
        "latency": 0.742,
        "barge_in": False,
        "translated_user_input": "",
        "english_agent_response": "",
        "intents": ["change_booking"],
        "entities": [{"date": "2026-11-27"}, {"names": ["Alex", "Sam"]}],
        "is_ood": False,
        "is_silence": False,
        "metadata": {
            "llmRequests": [{"model": "gpt-4o-mini", "inputTokens": 812, "outputTokens": 41}],
            "functionEvents": [{"name": "lookup_booking"}],
            "retrievedTopics": ["opening_hours"],
            "citedTopic": "opening_hours",
            "nodeTrace": ["start", "booking"],
        },
    }
    handoff = {
        "user_input": "Actually, can I speak to someone?",
        "user_input_dtmf": "",
        "user_input_datetime": "2026-11-20T09:00:17.90602Z",
        "agent_response": "Sure, I'll put you through to reception now.",
        "agent_response_datetime": "2026-11-20T09:00:19.22402Z",
        "latency": 1.318,
        "barge_in": True,
        "translated_user_input": "",
        "english_agent_response": "",
        "intents": ["speak_to_human"],
        "entities": [],
        "is_ood": False,
        "is_silence": False,
    }
    return {
        **_required(CALL_WITH_TURNS_ID, "2026-11-20T09:00:00Z", "VOICE-SIP"),
        "variant_id": "VARIANT-a1b2c3d4",
        "variant_name": "Main line",
        "from_number": "+447700900123",
        "to_number": "+442079460000",
        "num_turns": 2,
        "total_duration": 30,
        "polyai_duration": 20,
        "handoff": True,
        "handoff_reason": "caller asked for a person",
        "handoff_destination": "reception",
        "num_silences": 0,
        "num_ood": 0,
        "metrics": {
            "CALL_DURATION": "30",
            "CALL_TURN": ["2026-11-20T09:00:05.12677Z", "2026-11-20T09:00:17.90602Z"],
        },
        "state": {
            "from_": "+447700900123",
            "to": "+442079460000",
            "call_sid": CALL_WITH_TURNS_ID,
            "booking_day": "Friday",
        },
        "turns": [greeting, handoff],
    }


def _webchat() -> dict[str, Any]:
    turn = {
        "user_input": "What time do you open on Sunday?",
        "user_input_datetime": "2026-11-20T11:30:04Z",
        "agent_response": "On Sunday we open at 10am.",
        "agent_response_datetime": "2026-11-20T11:30:05Z",
        "intents": ["opening_hours"],
        "entities": [{"day": "Sunday"}],
        "is_ood": False,
        "is_silence": False,
    }
    return {**_required(WEBCHAT_ID, "2026-11-20T11:30:00Z", "WEBCHAT"), "turns": [turn]}


def _chat() -> dict[str, Any]:
    turn = {
        "user_input": "Do you have parking?",
        "user_input_dtmf": "",
        "user_input_datetime": "2026-11-20T14:05:03Z",
        "agent_response": "Yes, there is free parking behind the building.",
        "agent_response_datetime": "2026-11-20T14:05:03.412Z",
        "latency": 0.412,
        "translated_user_input": "",
        "english_agent_response": "",
        "intents": ["parking"],
        "entities": [],
        "is_ood": False,
        "is_silence": False,
    }
    return {
        **_required(CHAT_ID, "2026-11-20T14:05:00Z", "CHAT"),
        "variant_id": "VARIANT-a1b2c3d4",
        "variant_name": "Main line",
        "num_turns": 1,
        "total_duration": 12,
        "polyai_duration": 12,
        "handoff": False,
        "num_silences": 0,
        "num_ood": 0,
        "metrics": {},
        "state": {},
        "turns": [turn],
    }


def _call_without_turns() -> dict[str, Any]:
    return {
        **_required(CALL_WITHOUT_TURNS_ID, "2026-11-20T16:45:00Z", "VOICE-SIP"),
        "variant_id": "VARIANT-a1b2c3d4",
        "variant_name": "Main line",
        "from_number": "+447700900456",
        "to_number": "+442079460000",
        "num_turns": 3,
        "total_duration": 48,
        "polyai_duration": 48,
        "handoff": False,
        "handoff_reason": "",
        "handoff_destination": "",
        "num_silences": 1,
        "num_ood": 0,
        "metrics": {"CALL_DURATION": "48"},
        "state": {"from_": "+447700900456", "to": "+442079460000"},
        "turns": [],
    }
