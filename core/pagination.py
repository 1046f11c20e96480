"""Pagination: small objects with one job each, apart from HTTP and from loading.

A paginator says which position parameter the next request carries, reads the next position
from a response body, and decides whether there is another page. Both of the API's styles are
here: the keyset ``cursor`` (what a sync uses) and the legacy ``offset``.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from core import api_contract as api

PaginationStyle = Literal["cursor", "offset"]


class PaginationError(RuntimeError):
    """The API's pagination did not advance; following it would loop forever."""


class Paginator(Protocol):
    def position(self) -> dict[str, Any]:
        """The parameters that place the next request (empty for the first page)."""
        ...

    def advance(self, body: dict[str, Any]) -> bool:
        """Read the next position from a page's body; ``False`` when it was the last page."""
        ...


class CursorPaginator:
    """Follows the opaque ``cursor``; stops on a null cursor or an empty page."""

    def __init__(self) -> None:
        self.cursor: str | None = None
        self._seen: set[str] = set()

    def position(self) -> dict[str, Any]:
        return {api.P_CURSOR: self.cursor} if self.cursor is not None else {}

    def advance(self, body: dict[str, Any]) -> bool:
        cursor = body.get(api.R_CURSOR) or None
        if cursor is None or not body.get(api.R_CONVERSATIONS):
            return False
        if cursor in self._seen:
            raise PaginationError(f"the API returned cursor {cursor!r} twice")
        self._seen.add(cursor)
        self.cursor = cursor
        return True


class OffsetPaginator:
    """Follows ``next_offset``; stops when it is absent or a page is empty."""

    def __init__(self) -> None:
        self.offset = 0

    def position(self) -> dict[str, Any]:
        return {api.P_OFFSET: self.offset} if self.offset else {}

    def advance(self, body: dict[str, Any]) -> bool:
        next_offset = body.get(api.R_NEXT_OFFSET)
        if next_offset is None or not body.get(api.R_CONVERSATIONS):
            return False
        if not isinstance(next_offset, int) or next_offset <= self.offset:
            raise PaginationError(
                f"the API returned next_offset {next_offset!r} after offset {self.offset}"
            )
        self.offset = next_offset
        return True


def paginator(style: PaginationStyle) -> Paginator:
    if style == "cursor":
        return CursorPaginator()
    if style == "offset":
        return OffsetPaginator()
    raise ValueError(f"pagination style {style!r} is not 'cursor' or 'offset'")
