"""The sync state: one row of ``sync_state`` per (account, project, scope, window), saying
where the window's load stands. :mod:`resources.warehouse.load` writes it; what reads it
(a resumed sync, the freshness check, the schedule, the window checks) reads it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from core.windows import Scope, Window, window_key
from resources.warehouse.resource import Warehouse
from resources.warehouse.sql import IN_WINDOW, STATE_OF_WINDOW, window_params


@dataclass(frozen=True)
class WindowKey:
    """The sync state's key: one scope's window in one account and project."""

    account_id: str
    project_id: str
    scope: Scope
    window: Window

    def params(self) -> dict[str, Any]:
        """The parameters of :data:`resources.warehouse.sql.STATE_OF_WINDOW` (and of
        :data:`~resources.warehouse.sql.IN_WINDOW`)."""
        return {
            "account": self.account_id,
            "project": self.project_id,
            **window_params(self.scope, self.window),
        }

    def describe(self) -> str:
        """``live.voice 2026-01-05``, for messages."""
        return f"{self.scope.key} {window_key(self.window)}"


@dataclass(frozen=True)
class SyncState:
    """Where a window's load stands, as last committed."""

    status: str
    """running: pages being staged; staged: all pages in; complete: published; failed: the
    load failed (``error`` says why; a cursor kept means the next sync resumes after it)."""
    load_id: str
    cursor: str | None
    pages: int
    conversations: int
    quarantined: int
    in_progress: int
    error: str | None = None


def read_state(warehouse: Warehouse, key: WindowKey) -> SyncState | None:
    """The window's last committed state, or None if it was never synced."""
    with warehouse.connect(read_only=True) as con:
        row = con.execute(
            "SELECT status, load_id, cursor, pages, conversations, quarantined, in_progress, "
            f"error FROM sync_state WHERE {STATE_OF_WINDOW}",
            key.params(),
        ).fetchone()
    return SyncState(*row) if row else None


_PUBLISHED = "(status = 'complete' OR published_load_id IS NOT NULL)"
"""A window whose tables hold a load: its last, or an earlier one while a later runs or after
it failed."""


def newest_synced_days(warehouse: Warehouse) -> dict[Scope, date]:
    """Per scope, the day of the newest window published (any account and project)."""
    if not warehouse.has_table("sync_state"):
        return {}
    with warehouse.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT environment, channel, max(CAST(window_start AS DATE)) FROM sync_state "
            f"WHERE {_PUBLISHED} GROUP BY environment, channel"
        ).fetchall()
    return {Scope(env, channel): day for env, channel, day in rows}


def last_load(warehouse: Warehouse, scope: Scope, window: Window) -> str | None:
    """The load that last published the window (any account and project), or None if it was
    never published."""
    if not warehouse.has_table("sync_state"):
        return None
    with warehouse.connect(read_only=True) as con:
        row = con.execute(
            "SELECT CASE WHEN status = 'complete' THEN load_id ELSE published_load_id END "
            f"FROM sync_state WHERE {IN_WINDOW} AND {_PUBLISHED} "
            "ORDER BY completed_at DESC LIMIT 1",
            window_params(scope, window),
        ).fetchone()
    return row[0] if row else None


def windows_with_in_progress(warehouse: Warehouse) -> list[tuple[Scope, date]]:
    """The (scope, day) of every published window that held in-progress conversations, or
    whose later load has not completed (it failed, or runs: what it holds may be in progress
    too, and the window is worth another sync either way)."""
    if not warehouse.has_table("sync_state"):
        return []
    with warehouse.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT environment, channel, CAST(window_start AS DATE) FROM sync_state "
            "WHERE (status = 'complete' AND in_progress > 0) "
            "OR (status <> 'complete' AND published_load_id IS NOT NULL)"
        ).fetchall()
    return [(Scope(env, channel), day) for env, channel, day in rows]
