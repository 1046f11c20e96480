"""The PolyAI Conversations API v3 client, as a Dagster resource over httpx.

It pages through one query (:class:`core.query.ConversationQuery`) one page at a time, so
memory is bounded by the page size and never by the window. Transient failures (429, 5xx,
timeouts, dropped connections, truncated bodies) are retried with exponential backoff and full
jitter, honouring ``Retry-After``, a bounded number of times; 400/401/403/404 fail at once with
the status and the server's message. One keep-alive connection serves every page of a query.

The API key travels only in the ``x-api-key`` header: it is kept out of the resource's repr,
and no error message is built from request headers.

Import the client's errors from here; they are declared in :mod:`resources.polyai_errors`, and
reading one response (within its deadline and size, then as JSON) is
:mod:`resources.polyai_responses`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from dagster import ConfigurableResource
from pydantic import Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from core import api_contract as api
from core.channels import ChannelMap
from core.env import DEFAULTS, Env
from core.pagination import PaginationError, PaginationStyle, paginator
from core.privacy import PrivacyPolicy
from core.query import ConversationQuery, QueryError
from core.retry import is_retryable_status, parse_retry_after
from core.urls import ConfigError, check_source
from core.windows import Scope, Window
from resources.api_pace import MAX_IN_FLIGHT, InFlightLimit, pace_for
from resources.polyai_errors import (
    CursorRejectedError,
    PolyAIAuthError,
    PolyAIError,
    PolyAIHTTPError,
    PolyAIResponseError,
    PolyAITransportError,
    PolyAIUnavailableError,
    _Transient,
)
from resources.polyai_responses import (
    Connection,
    Page,
    RequestStats,
    Turn,
    parse_page_body,
    read_body,
    read_error,
    released_on_error,
    scrub_key,
    ssl_context,
)

__all__ = [
    "CursorRejectedError",
    "PaginationError",
    "PolyAIAuthError",
    "PolyAIClient",
    "PolyAIError",
    "PolyAIHTTPError",
    "PolyAIResponseError",
    "PolyAITransportError",
    "PolyAIUnavailableError",
    "QueryError",
    "RequestStats",
]

log = logging.getLogger(__name__)


class PolyAIClient(ConfigurableResource):
    """Reads conversations from one PolyAI account and project."""

    base_url: str = Field(description="API root, e.g. https://api.us-1.platform.polyai.app")
    api_key: str = Field(repr=False, description="Project API key (secret; use EnvVar)")
    account_id: str
    project_id: str
    page_size: int = Field(default=api.MAX_LIMIT, ge=api.MIN_LIMIT, le=api.MAX_LIMIT)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    read_timeout_seconds: float = Field(default=60.0, gt=0)
    request_deadline_seconds: float = Field(
        default=float(DEFAULTS[Env.POLYAI_REQUEST_DEADLINE_SECONDS]),
        gt=0,
        description="the longest one request may take, body included",
    )
    request_budget_seconds: float = Field(
        default=float(DEFAULTS[Env.POLYAI_REQUEST_BUDGET_SECONDS]),
        gt=0,
        description="the longest one request may take across its tries and waits",
    )
    allow_insecure_http: bool = Field(
        default=False,
        description=f"{Env.POLYAI_ALLOW_INSECURE_HTTP}: allow plain http:// to a host other "
        "than loopback",
    )
    max_response_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0, description="the largest response body, inflated"
    )
    max_attempts: int = Field(default=6, ge=1, description="tries per request, first included")
    max_in_flight: int = Field(
        default=int(DEFAULTS[Env.POLYAI_MAX_IN_FLIGHT]),
        ge=1,
        le=MAX_IN_FLIGHT,
        description=f"{Env.POLYAI_MAX_IN_FLIGHT}: requests in flight at once, at most, across "
        "a sync's processes (a 429 lowers it for a while: resources/api_pace.py)",
    )
    backoff_base_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    max_retry_after_seconds: float = Field(
        default=300.0, ge=0, description="longest Retry-After honoured; longer waits are capped"
    )
    hash_phone_numbers: bool = Field(
        default=False, description="store from_number/to_number as keyed hashes"
    )
    phone_hash_salt: str = Field(
        default="", repr=False, description="the hashes' secret key (secret; use EnvVar)"
    )
    redact_transcripts: bool = Field(
        default=False, description="redact emails, phone and card numbers in transcript text"
    )
    channel_map: str = Field(
        default=DEFAULTS[Env.POLYAI_CHANNEL_MAP],
        description=f"{Env.POLYAI_CHANNEL_MAP}: configured channel = the response labels it "
        "accepts, over the defaults (voice=VOICE-SIP;chat=WEBCHAT,CHAT)",
    )
    channel_filter: str = Field(
        default=DEFAULTS[Env.POLYAI_CHANNEL_FILTER],
        description=f"{Env.POLYAI_CHANNEL_FILTER}: what channel= sends: both (name and "
        "labels), labels or name",
    )

    @property
    def channels(self) -> ChannelMap:
        """Which labels a scope's channel accepts, and what its filter sends."""
        return ChannelMap.parse(self.channel_map, self.channel_filter)

    @property
    def pace(self) -> InFlightLimit:
        """The in-flight limit every client of this key shares in this process."""
        return pace_for(self.base_url, self.api_key, self.max_in_flight)

    @property
    def privacy(self) -> PrivacyPolicy:
        """What every page's conversations go through before a consumer sees them."""
        key = self.phone_hash_salt.encode() if self.hash_phone_numbers else None
        if self.hash_phone_numbers and not self.phone_hash_salt:
            raise ValueError("hash_phone_numbers needs phone_hash_salt")
        return PrivacyPolicy(hash_key=key, redact=self.redact_transcripts)

    def iter_window(
        self,
        scope: Scope,
        window: Window,
        stats: RequestStats | None = None,
        start_cursor: str | None = None,
        turn: Turn | None = None,
    ) -> Iterator[Page]:
        """Every conversation of one scope in one window, with latency and genAI metadata,
        page by page (what a sync reads); ``start_cursor`` resumes an interrupted read."""
        query = ConversationQuery.for_window(
            scope, window, limit=self.page_size, channels=self.channels
        )
        return self.iter_pages(query, stats=stats, start_cursor=start_cursor, turn=turn)

    def iter_pages(
        self,
        query: ConversationQuery,
        pagination: PaginationStyle = "cursor",
        stats: RequestStats | None = None,
        start_cursor: str | None = None,
        turn: Turn | None = None,
    ) -> Iterator[Page]:
        """Every page of ``query``, following the cursor (or the legacy offset).

        ``start_cursor`` resumes a query at a cursor an earlier page returned. ``turn`` (a
        semaphore the processes fetching side by side share) is acquired once a page's body
        has arrived, before it is parsed, and the caller releases it when done with the page:
        a page waits for the cores as bytes, not as parsed objects.
        """
        stats = stats if stats is not None else RequestStats()
        pages = paginator(pagination)
        if start_cursor is not None:
            if pagination != "cursor":
                raise QueryError("start_cursor needs cursor pagination")
            pages.cursor = start_cursor  # type: ignore[attr-defined]
        path = api.endpoint_path(self.account_id, self.project_id)
        privacy = self.privacy
        with Connection(self._http) as http:
            number = 0
            while True:
                position = pages.position()
                body = self._get(http, path, {**query.params(), **position}, query, stats, turn)
                with released_on_error(turn):
                    conversations = body.get(api.R_CONVERSATIONS)
                    if not isinstance(conversations, list):
                        raise PolyAIResponseError(
                            f"response for {query.describe()} has no '{api.R_CONVERSATIONS}' list"
                        )
                    more = pages.advance(body)
                    if privacy.active:  # before anything downstream can write a byte of it
                        conversations = [privacy.apply(record) for record in conversations]
                number += 1
                page = Page(number, conversations, body.get(api.R_CURSOR) or None)
                del body, conversations  # the consumer holds the page: let it free it
                yield page  # with ``turn`` held: the consumer releases it
                del page  # before the next page is parsed, not after
                if not more:
                    return

    def _http(self) -> httpx.Client:
        try:
            check_source(
                self.base_url,
                self.api_key,
                self.account_id,
                self.project_id,
                self.allow_insecure_http,
            )
        except ConfigError as exc:
            raise PolyAIError(str(exc)) from None
        return httpx.Client(
            base_url=self.base_url.rstrip("/"),
            verify=ssl_context(),
            headers={api.API_KEY_HEADER: self.api_key},
            timeout=httpx.Timeout(
                connect=self.connect_timeout_seconds,
                read=self.read_timeout_seconds,
                write=self.read_timeout_seconds,
                pool=self.connect_timeout_seconds,
            ),
        )

    def _get(
        self,
        http: Connection,
        path: str,
        params: dict[str, Any],
        query: ConversationQuery,
        stats: RequestStats,
        turn: Turn | None = None,
    ) -> dict[str, Any]:
        # Spaces must travel as %20 (API.md), which httpx's own encoder writes as '+'.
        url = f"{path}?{urlencode(params, doseq=True, quote_via=quote)}"
        budget_ends = time.monotonic() + self.request_budget_seconds

        def record_retry(state: RetryCallState) -> None:
            self._record_retry(state, stats, query)
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Transient) and exc.status is None:
                http.fresh()  # what is left on a connection cut mid-answer is not reused

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts)
            | stop_before_delay(self.request_budget_seconds),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, _Transient)),
            before_sleep=record_retry,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    left = budget_ends - time.monotonic()
                    return self._get_once(http.client, url, params, query, stats, turn, left)
        except _Transient as exc:
            if exc.status is not None:
                raise PolyAIUnavailableError(
                    exc.status,
                    exc.reason,
                    query.describe(),
                    attempts=attempts,
                    error_code=exc.error_code,
                    error_id=exc.error_id,
                ) from None
            raise PolyAITransportError(
                f"could not read {query.describe()} from {self.base_url} after "
                f"{attempts} attempt{'' if attempts == 1 else 's'}: {exc.reason}"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _get_once(
        self,
        http: httpx.Client,
        url: str,
        params: dict[str, Any],
        query: ConversationQuery,
        stats: RequestStats,
        turn: Turn | None = None,
        budget_left: float | None = None,
    ) -> dict[str, Any]:
        stats.requests += 1
        response, content = self._read(http, url, query, budget_left)
        stats.statuses[response.status_code] = stats.statuses.get(response.status_code, 0) + 1
        if response.status_code != httpx.codes.OK:
            # The published envelope (error_code, error_message, error_id), every part
            # scrubbed of the key before it reaches an error, a log line or a repr.
            said = read_error(response, content, self._scrub)
            status = response.status_code
            if is_retryable_status(status):
                retry_after = parse_retry_after(
                    response.headers.get("retry-after"), datetime.now(UTC)
                )
                raise _Transient(
                    said.message, status, retry_after, error_code=said.code, error_id=said.error_id
                )
            where = query.describe()
            envelope = {"error_code": said.code, "error_id": said.error_id, "host": said.host}
            if status in (401, 403):
                raise PolyAIAuthError(status, said.message, where, **envelope)
            if status == 400 and api.P_CURSOR in params:
                raise CursorRejectedError(status, said.message, where, **envelope)
            raise PolyAIHTTPError(status, said.message, where, **envelope)
        if turn is not None:
            turn.acquire()  # held until the caller is done with the page
        with released_on_error(turn):
            return parse_page_body(content, query, self._scrub)

    def _read(
        self,
        http: httpx.Client,
        url: str,
        query: ConversationQuery,
        budget_left: float | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """One request and its body, in a slot of the in-flight limit (a 429 cuts it);
        a timeout or a transport error is transient."""
        pace = self.pace
        ticket = pace.acquire()
        throttled, retry_after = False, None
        try:
            response, content = read_body(
                http,
                url,
                query,
                deadline_seconds=min(
                    self.request_deadline_seconds,
                    budget_left if budget_left is not None else self.request_deadline_seconds,
                ),
                max_bytes=self.max_response_bytes,
            )
            throttled = response.status_code == httpx.codes.TOO_MANY_REQUESTS
            if throttled:
                retry_after = parse_retry_after(
                    response.headers.get("retry-after"), datetime.now(UTC)
                )
            return response, content
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        finally:
            if retry_after is not None:
                retry_after = min(retry_after, self.max_retry_after_seconds)
            pace.release(ticket, throttled, retry_after)

    def _scrub(self, text: str) -> str:
        """What the server said, without the key should it echo it back (whole, encoded, or
        cut short at the end of ``text``)."""
        return scrub_key(text, self.api_key)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after_seconds)
        backoff = wait_random_exponential(
            multiplier=self.backoff_base_seconds, max=self.backoff_max_seconds
        )
        return backoff(state)

    def _record_retry(
        self, state: RetryCallState, stats: RequestStats, query: ConversationQuery
    ) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        stats.retries += 1
        stats.wait_seconds += wait
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying %s in %.2fs (attempt %d of %d): %s",
            query.describe(), wait, state.attempt_number + 1, self.max_attempts, exc,
        )  # fmt: skip
