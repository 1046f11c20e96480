"""The simulator's HTTP front: request validation, auth, and cursor/offset pagination.

Built on the standard library's threading HTTP server with HTTP/1.1 keep-alive, so a client
reuses its connection across pages as it would against the real API.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from core import api_contract as api
from simulator.data import Dataset, SimulatorConfig

_PATH = re.compile(r"^/v3/(?P<account>[^/]+)/(?P<project>[^/]+)/conversations/?$")


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def encode_cursor(start_us: int, conversation_id: str) -> str:
    return base64.urlsafe_b64encode(f"{start_us}:{conversation_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start, conversation_id = raw.split(":", 1)
        return int(start), conversation_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed cursor {cursor!r}") from None


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{name} may be given only once")
    return values[0]


def _timestamp(query: dict[str, list[str]], name: str) -> datetime:
    value = _one(query, name)
    if value is None:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{name} is required")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{name} {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{name} {value!r} has no time zone offset")
    return moment


def _int(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int | None) -> int:
    value = _one(query, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{name} {value!r} is not an integer") from None
    if number < lo or (hi is not None and number > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{name} must be {bound}, got {number}")
    return number


def list_conversations(dataset: Dataset, query: dict[str, list[str]]) -> dict[str, Any]:
    """The response body for one validated query (default retrieval mode)."""
    environment = _one(query, api.P_CLIENT_ENV) or api.DEFAULT_ENVIRONMENT
    if environment not in api.ENVIRONMENTS:
        raise BadRequest(
            HTTPStatus.BAD_REQUEST,
            f"{api.P_CLIENT_ENV} {environment!r} is not one of {', '.join(api.ENVIRONMENTS)}",
        )
    start = _timestamp(query, api.P_START_TIME)
    end = _timestamp(query, api.P_END_TIME)
    if start >= end:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{api.P_START_TIME} must be before end_time")
    limit = _int(query, api.P_LIMIT, api.MAX_LIMIT, api.MIN_LIMIT, api.MAX_LIMIT)
    cursor = _one(query, api.P_CURSOR)
    offset = _int(query, api.P_OFFSET, 0, 0, None)
    if cursor is not None and offset:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "give either cursor or offset, not both")
    channels = sorted(set(query.get(api.P_CHANNEL) or ["voice", "chat"]))

    after = decode_cursor(cursor) if cursor else None
    keys = dataset.keys_in(environment, channels, start, end, after)
    if offset:
        keys = islice(keys, offset, None)
    window = list(islice(keys, limit + 1))
    page, more = window[:limit], len(window) > limit
    body: dict[str, Any] = {
        api.R_CONVERSATIONS: [
            dataset.conversation(environment, channel, start_us, cid)
            for start_us, cid, channel in page
        ],
        api.R_CURSOR: encode_cursor(page[-1][0], page[-1][1]) if more else None,
    }
    if more and cursor is None:
        # Offset pagination's marker; a position counted from a cursor would be meaningless.
        body[api.R_NEXT_OFFSET] = offset + len(page)
    return body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        try:
            body = self._respond()
            self._send(HTTPStatus.OK, body)
        except BadRequest as exc:
            self._send(exc.status, {"detail": exc.message})

    def _respond(self) -> dict[str, Any]:
        self.server.count_request()
        config = self.server.dataset.config
        url = urlsplit(self.path)
        match = _PATH.match(url.path)
        if not match:
            raise BadRequest(HTTPStatus.NOT_FOUND, f"no such endpoint {url.path}")
        if self.headers.get(api.API_KEY_HEADER) != config.api_key:
            raise BadRequest(HTTPStatus.UNAUTHORIZED, "missing or invalid API key")
        if (match["account"], match["project"]) != (config.account_id, config.project_id):
            raise BadRequest(HTTPStatus.NOT_FOUND, "unknown account or project")
        query = parse_qs(url.query, keep_blank_values=True)
        return list_conversations(self.server.dataset, query)

    def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet by default: a sync makes thousands of requests."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], dataset: Dataset) -> None:
        super().__init__(address, _Handler)
        self.dataset = dataset
        self._lock = threading.Lock()
        self.requests = 0

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1


class SimulatorServer:
    """The simulator on a loopback port; port 0 picks a free one."""

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.dataset = Dataset(config or SimulatorConfig())
        self._server = _Server((host, port), self.dataset)
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> SimulatorConfig:
        return self.dataset.config

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def source_variables(self) -> dict[str, str]:
        """The four ``POLYAI_*`` variables that point a sync at this server."""
        return {
            "POLYAI_BASE_URL": self.base_url,
            "POLYAI_API_KEY": self.config.api_key,
            "POLYAI_ACCOUNT_ID": self.config.account_id,
            "POLYAI_PROJECT_ID": self.config.project_id,
        }

    @property
    def requests(self) -> int:
        return self._server.requests

    def start(self) -> SimulatorServer:
        # A short poll interval so that stop() returns promptly (tests start many servers).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="polyai-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
