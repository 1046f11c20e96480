"""The PolyAI Conversations API v3 client, as a Dagster resource over httpx.

It pages through one (scope, window) query with the keyset cursor, yielding one page at a
time, so memory is bounded by the page size and never by the window. The API key travels only
in the ``x-api-key`` header: it is kept out of the resource's repr and out of every error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from dagster import ConfigurableResource
from pydantic import Field

from core import api_contract as api
from core.windows import Scope, Window


class PolyAIError(Exception):
    """Base of every error the client raises."""


class PolyAIHTTPError(PolyAIError):
    """The API answered with an error status; the message carries the server's detail."""

    def __init__(self, status: int, detail: str, url: str) -> None:
        super().__init__(f"PolyAI API returned HTTP {status} for {url}: {detail}")
        self.status = status
        self.detail = detail


class PolyAIResponseError(PolyAIError):
    """The API answered 200 with a body that is not the documented shape."""


class PaginationError(PolyAIError):
    """The API's pagination did not advance (the same cursor came back twice)."""


@dataclass(frozen=True)
class Page:
    """One page of a query: its conversations and the cursor of the page after it."""

    number: int
    conversations: list[dict[str, Any]]
    next_cursor: str | None


def _isoformat(window_edge: Any) -> str:
    return window_edge.isoformat().replace("+00:00", "Z")


class PolyAIClient(ConfigurableResource):
    """Reads conversations from one PolyAI account and project."""

    base_url: str = Field(description="API root, e.g. https://api.us-1.platform.polyai.app")
    api_key: str = Field(repr=False, description="Project API key (secret; use EnvVar)")
    account_id: str
    project_id: str
    page_size: int = Field(default=api.MAX_LIMIT, ge=api.MIN_LIMIT, le=api.MAX_LIMIT)
    timeout_seconds: float = 30.0

    def query_params(self, scope: Scope, window: Window) -> dict[str, Any]:
        """The query a sync of ``scope`` over ``window`` sends (without the cursor)."""
        return {
            api.P_CLIENT_ENV: scope.environment,
            api.P_CHANNEL: [scope.channel],
            api.P_START_TIME: _isoformat(window.start),
            api.P_END_TIME: _isoformat(window.end),
            api.P_LIMIT: self.page_size,
        }

    def iter_pages(self, scope: Scope, window: Window) -> Iterator[Page]:
        """Every page of the scope's conversations in the window, following the cursor."""
        params = self.query_params(scope, window)
        path = api.endpoint_path(self.account_id, self.project_id)
        seen: set[str] = set()
        with httpx.Client(
            base_url=self.base_url.rstrip("/"),
            headers={api.API_KEY_HEADER: self.api_key},
            timeout=self.timeout_seconds,
        ) as client:
            number = 0
            cursor: str | None = None
            while True:
                page_params = dict(params)
                if cursor is not None:
                    page_params[api.P_CURSOR] = cursor
                response = client.get(path, params=page_params)
                body = _read_body(response)
                conversations = body.get(api.R_CONVERSATIONS)
                if not isinstance(conversations, list):
                    raise PolyAIResponseError(
                        f"response from {response.url} has no '{api.R_CONVERSATIONS}' list"
                    )
                next_cursor = body.get(api.R_CURSOR) or None
                number += 1
                yield Page(number, conversations, next_cursor)
                if next_cursor is None or not conversations:
                    return
                if next_cursor in seen:
                    raise PaginationError(
                        f"the API returned cursor {next_cursor!r} twice for {scope.key} "
                        f"{window.start:%Y-%m-%d %H:%M}..{window.end:%Y-%m-%d %H:%M}"
                    )
                seen.add(next_cursor)
                cursor = next_cursor


def _read_body(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != httpx.codes.OK:
        try:
            detail = str(response.json().get("detail", response.text))
        except ValueError:
            detail = response.text[:500]
        raise PolyAIHTTPError(response.status_code, detail, str(response.url))
    try:
        body = response.json()
    except ValueError as exc:
        raise PolyAIResponseError(f"response from {response.url} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise PolyAIResponseError(f"response from {response.url} is not a JSON object")
    return body
