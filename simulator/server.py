"""The simulator's HTTP front: routing, auth, fault injection and the JSON answer.

Built on the standard library's threading HTTP server with HTTP/1.1 keep-alive, so a client
reuses one connection across pages as it would against the real API. What a request selects
is decided in :mod:`simulator.selection`; which fault it meets, in :mod:`simulator.faults`.

Every error is PolyAI's published envelope, ``{success: false, error, error_id, error_code,
error_message, data: null}``, with ``error_id`` also in the ``X-PolyAI-Correlation-Id`` header
(a success carries a correlation id too).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from core import api_contract as api
from simulator.data import Dataset, SimulatorConfig
from simulator.faults import FaultPlan
from simulator.selection import (
    CURSOR_INVALID,
    BadRequest,
    Request,
    Selection,
    parse_request,
    restart_cursor,
)

COUNTERS_PATH = "/_simulator/counters"
"""The simulator's own counters (requests, connections, conversations served) as JSON, for a
benchmark whose simulator runs in another process; not part of the API, and not counted."""
_PATH = re.compile(r"^/v3/(?P<account>[^/]+)/(?P<project>[^/]+)/conversations/?$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and
        # delayed ACKs hold the second one back ~40 ms on every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.count("connections")

    def do_GET(self) -> None:
        if self.path == COUNTERS_PATH:
            self._send(HTTPStatus.OK, dict(self.server.counters))
            return
        self.server.count("requests")
        self.server.paths.append(self.path)
        with self.server.handling():
            self._answer()

    def _answer(self) -> None:
        try:
            request = self._authorized_request()
        except BadRequest as exc:
            self._error(exc)
            return
        faults = self.server.faults
        if faults.config.latency_ms:
            time.sleep(faults.config.latency_ms / 1000)
        fault = faults.draw(has_cursor=request.cursor is not None)
        if fault == "drop":
            self._drop()
            return
        if fault == "429":
            self._error(BadRequest(HTTPStatus.TOO_MANY_REQUESTS, "rate limit exceeded"), True)
            return
        if fault == "5xx":
            status = faults.pick_5xx()
            self._error(BadRequest(status, f"simulated {status.phrase.lower()}"))
            return
        if fault == "non_json":
            self._send_raw(HTTPStatus.OK, b"<html><body>502 Bad Gateway</body></html>")
            return
        if fault == "stall":
            time.sleep(faults.config.stall_seconds)
        if fault == "reject_cursor":
            message = "cursor is invalid or has expired"
            self._error(BadRequest(HTTPStatus.BAD_REQUEST, message, CURSOR_INVALID))
            return
        try:
            serialized = not faults.config.alters_records
            body = Selection(self.server.dataset, request, serialized).body()
        except BadRequest as exc:
            self._error(exc)
            return
        if not serialized:
            faults.alter_records(body[api.R_CONVERSATIONS])
        chronological = request.sample is None and request.query_type != "semantic"
        if fault in ("repeat_page", "empty_page") and request.offset == 0 and chronological:
            if fault == "empty_page":
                body = {**body, api.R_CONVERSATIONS: []}
            cursor = restart_cursor(request.cursor, time.monotonic_ns())
            body = {**body, api.R_CURSOR: cursor}
        self.server.count("conversations", len(body[api.R_CONVERSATIONS]))
        self._send(HTTPStatus.OK, body, truncate=fault == "truncate")

    def _authorized_request(self) -> Request:
        """The request, parsed, for a known endpoint, key and project; the project may be
        the one whose transcripts are hidden."""
        config = self.server.dataset.config
        url = urlsplit(self.path)
        match = _PATH.match(url.path)
        if not match:
            raise BadRequest(HTTPStatus.NOT_FOUND, f"no such endpoint {url.path}", "NOT_FOUND")
        key = self.headers.get(api.API_KEY_HEADER)
        if not key:
            raise BadRequest(HTTPStatus.UNAUTHORIZED, f"missing {api.API_KEY_HEADER} header")
        if key != config.api_key:
            # A key that exists but is not scoped to this project (or region) is refused.
            raise BadRequest(HTTPStatus.FORBIDDEN, "API key is not valid for this project")
        projects = (config.project_id, config.transcripts_hidden_project)
        if match["account"] != config.account_id or match["project"] not in projects:
            raise BadRequest(HTTPStatus.NOT_FOUND, "unknown account or project")
        request = parse_request(parse_qs(url.query, keep_blank_values=True))
        return replace(request, project_id=match["project"])

    def _error(self, error: BadRequest, retry: bool = False) -> None:
        """PolyAI's error envelope, its ``error_id`` also the correlation header."""
        error_id = str(uuid.uuid4())
        body = {
            api.E_SUCCESS: False,
            api.E_ERROR: error.message,
            api.E_ERROR_ID: error_id,
            api.E_ERROR_CODE: error.code,
            api.E_ERROR_MESSAGE: error.message,
            api.E_DATA: None,
        }
        self._send(error.status, body, retry=retry, correlation_id=error_id)

    def _send(
        self,
        status: HTTPStatus,
        body: dict[str, Any],
        retry: bool = False,
        truncate: bool = False,
        correlation_id: str | None = None,
    ) -> None:
        payload = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header(api.CORRELATION_ID_HEADER, correlation_id or str(uuid.uuid4()))
        if retry:
            retry_after = self.server.faults.retry_after_header()
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it gave up on us
            if truncate:
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self._drop()
                return
            self.wfile.write(payload)

    def _send_raw(self, status: HTTPStatus, payload: bytes) -> None:
        """A body that is not JSON (an error page from something in between)."""
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may have gone already
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet by default: a sync makes thousands of requests."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], dataset: Dataset, faults: FaultPlan) -> None:
        super().__init__(address, _Handler)
        self.dataset = dataset
        self.faults = faults
        self._lock = threading.Lock()
        self.counters = {
            "requests": 0,
            "connections": 0,
            "conversations": 0,
            "in_flight": 0,
            "peak_in_flight": 0,
        }
        self.paths: deque[str] = deque(maxlen=100)  # the raw request lines, for tests

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] += amount

    @contextmanager
    def handling(self) -> Iterator[None]:
        """A request being answered: counted in flight, and in the most at once."""
        with self._lock:
            self.counters["in_flight"] += 1
            peak = max(self.counters["peak_in_flight"], self.counters["in_flight"])
            self.counters["peak_in_flight"] = peak
        try:
            yield
        finally:
            self.count("in_flight", -1)


class SimulatorServer:
    """The simulator on a loopback port; port 0 picks a free one."""

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.dataset = Dataset(config or SimulatorConfig())
        self.faults = FaultPlan(self.dataset.config.faults)
        self._server = _Server((host, port), self.dataset, self.faults)
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
        return self._server.counters["requests"]

    @property
    def recent_paths(self) -> list[str]:
        """The raw paths (with query strings) of the last 100 requests, oldest first."""
        return list(self._server.paths)

    @property
    def peak_in_flight(self) -> int:
        """The most requests this server answered at once."""
        return self._server.counters["peak_in_flight"]

    @property
    def connections(self) -> int:
        return self._server.counters["connections"]

    @property
    def conversations_served(self) -> int:
        return self._server.counters["conversations"]

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
