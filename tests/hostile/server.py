"""A PolyAI API of its own: written apart from :mod:`simulator` (its own records, its own
pagination, its own idea of what a window holds), so an assumption the client and the
simulator share cannot hide a case. It serves, on loopback, exactly the records a test puts
under each (environment, channel, day) and whatever odd behaviour a test plugs in.

Nothing here tries to be the real API; it is what a surprising one could do.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KEY = "hk-hostile-secret-6f1c"
ACCOUNT = "acct-hostile"
PROJECT = "proj-hostile"

Query = dict[str, list[str]]


@dataclass
class Reply:
    """One HTTP answer; ``body`` may be chunks written one by one, ``pause`` seconds apart."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    pause: float = 0.0


def json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(payload).encode())


def conversation(
    ident: str,
    started_at: str,
    environment: str = "live",
    channel: str = "voice",
    turns: int = 2,
    **fields: Any,
) -> dict[str, Any]:
    """A conversation as this server writes them: ``turns`` turns with a latency breakdown."""
    record: dict[str, Any] = {
        "id": ident,
        "account_id": ACCOUNT,
        "project_id": PROJECT,
        "environment": environment,
        "channel": channel,
        "started_at": started_at,
        "in_progress": False,
        "num_turns": turns,
        "total_duration": 30 * turns,
        "handoff": False,
        "metrics": {"CALL_DURATION": str(30 * turns)},
        "turns": [
            {
                "user_input": f"question {n}",
                "agent_response": f"answer {n}",
                "latency": 100 + n,
                "is_ood": False,
                "is_silence": False,
            }
            for n in range(turns)
        ],
        "latency": {
            "turns": [
                {"turn_index": n, "stages": {"asr": 50, "model": 100 + n}} for n in range(turns)
            ]
        },
    }
    record.update(fields)
    return record


class HostileAPI:
    """Records by (environment, channel, day); pages of ``limit`` with a cursor of its own.

    ``override(query)`` may answer a request itself (return a :class:`Reply`), or return
    None to let the records be served; ``rewrite(query, body)`` may change a page's body.
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
        self.requests: list[Query] = []
        self.override: Callable[[Query], Reply | None] | None = None
        self.rewrite: Callable[[Query, dict[str, Any]], Any] | None = None

    def put(self, environment: str, channel: str, day: str, records: list[Any]) -> None:
        """What a query of that scope and day returns from now on."""
        self.records[environment, channel, day] = list(records)

    def answer(self, path: str, query: Query) -> Reply:
        self.requests.append(query)
        if path != f"/v3/{ACCOUNT}/{PROJECT}/conversations":
            return json_reply({"detail": f"no such path {path}"}, 404)
        if self.override is not None:
            reply = self.override(query)
            if reply is not None:
                return reply
        environment = query.get("client_env", ["live"])[0]
        day = query["start_time"][0][:10]
        matching = [
            record
            for channel in query.get("channel", [])
            for record in self.records[environment, channel, day]
        ]
        limit = int(query.get("limit", ["1000"])[0])
        cursor = query.get("cursor", [""])[0]
        # A cursor of its own tells where to go on; any other starts over (a test's own).
        offset = int(cursor.removeprefix("after-")) if cursor.startswith("after-") else 0
        page = matching[offset : offset + limit]
        more = offset + limit < len(matching)
        body: dict[str, Any] = {
            "conversations": page,
            "cursor": f"after-{offset + limit}" if more else None,
        }
        if self.rewrite is not None:
            body = self.rewrite(query, body)
        return json_reply(body)


@contextmanager
def serving(api: HostileAPI) -> Iterator[str]:
    """``api`` on a loopback port; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            reply = api.answer(url.path, parse_qs(url.query))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if isinstance(reply.body, bytes):
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                return
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for chunk in reply.body:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    time.sleep(reply.pause)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: what a stall test expects

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
