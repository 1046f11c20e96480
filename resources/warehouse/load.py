"""One load of one window: begun, staged page by page, then published (or discarded).

Each page is *staged* (appended to the staging tables under the load's id) in one short
transaction that also records the page's cursor in ``sync_state`` and its quarantined records
in ``quarantine``: a run that dies resumes from the last committed cursor. When the last page
is in, the window is *published*: in one transaction its old rows are deleted and the staged
rows inserted, so readers see the old window or the new one, never a mix, and loading a window
twice leaves the same rows as loading it once.

:class:`WindowLoad` is a plain class over the warehouse's connections; the engine supplies
only the bulk insert and the room a large transaction needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from core import schema
from core.normalize import Batch
from resources.warehouse.quarantine import Collision, quarantine_rows, set_aside_collisions
from resources.warehouse.resource import Warehouse, WarehouseError
from resources.warehouse.sql import (
    IN_WINDOW,
    PAGE_COLUMN,
    STAGE_PREFIX,
    STATE_OF_WINDOW,
    Connection,
    column_list,
    count,
    quote,
    window_params,
)
from resources.warehouse.state import WindowKey

_STAGED_CONVERSATIONS = quote(STAGE_PREFIX + "conversations")


@dataclass(frozen=True)
class PublishResult:
    """What publishing did: rows the window now holds per table, what it held before, and
    the conversations left with the window that already held them."""

    rows: dict[str, int]
    replaced: int = 0
    collisions: tuple[Collision, ...] = ()


class WindowLoad:
    """The load ``load_id`` of the window ``key`` into ``warehouse``."""

    def __init__(self, warehouse: Warehouse, key: WindowKey, load_id: str) -> None:
        self.warehouse = warehouse
        self.key = key
        self.load_id = load_id

    def begin(self) -> None:
        """Start a fresh load of the window, dropping whatever an earlier one staged."""
        now = datetime.now(UTC)
        with self.warehouse.connect() as con:
            con.execute("BEGIN")
            _forget_window(con, self.key)
            con.execute(
                "INSERT INTO sync_state (account_id, project_id, environment, channel, "
                "window_start, window_end, status, load_id, pages, conversations, quarantined, "
                "in_progress, large_value_bytes, started_at, updated_at) VALUES ($account, "
                "$project, $env, $channel, $start, $end, 'running', $load, 0, 0, 0, 0, 0, "
                "$now, $now)",
                {**self.key.params(), "end": self.key.window.end, "load": self.load_id, "now": now},
            )
            con.execute("COMMIT")

    def stage(self, page: int, batch: Batch, next_cursor: str | None) -> None:
        """Commit one page: its rows, its quarantined records and the cursor after it."""
        key, large = self.key, batch.large_value_bytes
        what = f"{key.describe()} page {page}"
        with (
            self.warehouse.connect() as con,
            self.warehouse.room_for(con, large, what, page=True),
        ):
            con.execute("BEGIN")
            for table, rows in batch.tables.items():
                if rows.num_rows:
                    self.warehouse.insert(con, STAGE_PREFIX + table, rows, page=int(page))
            if batch.quarantined:
                rows = quarantine_rows(
                    key, self.load_id, page, batch.quarantined, datetime.now(UTC)
                )
                self.warehouse.insert(con, "quarantine", rows)
            if not self._advance(con, page, batch, next_cursor):
                con.execute("ROLLBACK")
                raise WarehouseError(
                    f"load {self.load_id} no longer owns {key.describe()}: "
                    "another sync of the same window took it over"
                )
            con.execute("COMMIT")

    def _advance(self, con: Connection, page: int, batch: Batch, next_cursor: str | None) -> bool:
        """Record the page in the window's state (``staged`` after the last one); whether
        this load still owns the window."""
        return bool(
            con.execute(
                "UPDATE sync_state SET cursor = $cursor, pages = $page, "
                "conversations = conversations + $rows, quarantined = quarantined + $bad, "
                "in_progress = in_progress + $ongoing, updated_at = $now, "
                "large_value_bytes = coalesce(large_value_bytes, 0) + $large, "
                "status = CASE WHEN CAST($cursor AS VARCHAR) IS NULL THEN 'staged' "
                "ELSE 'running' END "
                f"WHERE {STATE_OF_WINDOW} AND load_id = $load AND status = 'running' "
                "RETURNING 1",
                {
                    **self.key.params(),
                    "cursor": next_cursor,
                    "page": page,
                    "rows": batch.conversations.num_rows,
                    "bad": len(batch.quarantined),
                    "ongoing": batch.in_progress,
                    "large": batch.large_value_bytes,
                    "now": datetime.now(UTC),
                    "load": self.load_id,
                },
            ).fetchall()
        )

    def publish(self) -> PublishResult:
        """Replace the window with what this load staged, atomically, and mark it complete.

        The window's own rows (:data:`resources.warehouse.sql.IN_WINDOW`) are replaced, never
        another window's. A conversation the load brings that another window or scope already
        holds stays where it is (so that window's rows, KPIs and lake files keep agreeing) and
        this load's copy is quarantined, whole, with a reason naming the holder.
        """
        with self.warehouse.connect() as con:
            large = count(
                con,
                f"SELECT coalesce(large_value_bytes, 0) FROM sync_state WHERE {STATE_OF_WINDOW}",
                self.key.params(),
            )
            with self.warehouse.room_for(
                con, large, f"publishing {self.key.describe()}", page=False
            ):
                con.execute("BEGIN")
                replaced = _delete_window(con, self.key)
                collisions = set_aside_collisions(
                    con, self.warehouse.insert, self.key, self.load_id
                )
                rows = self._insert_staged(con, held_elsewhere=bool(collisions))
                if collisions:
                    con.execute("DROP TABLE held_elsewhere")
                _drop_staged(con, self.load_id)
                con.execute(
                    "UPDATE sync_state SET status = 'complete', cursor = NULL, "
                    "replaced_conversations = $replaced, collisions = $collisions, "
                    f"updated_at = $now, completed_at = $now WHERE {STATE_OF_WINDOW}",
                    {
                        **self.key.params(),
                        "replaced": replaced,
                        "collisions": len(collisions),
                        "now": datetime.now(UTC),
                    },
                )
                con.execute("COMMIT")
        return PublishResult(rows, replaced, tuple(collisions))

    def _insert_staged(self, con: Connection, held_elsewhere: bool) -> dict[str, int]:
        """Insert the load's staged rows into the window tables (but those of conversations
        ``held_elsewhere`` names); the rows inserted per table. A conversation served on two
        pages keeps its latest copy, children included; only then is more than a streaming
        copy needed."""
        load = {"load": self.load_id}
        served_twice = count(
            con,
            f"SELECT count(*) - count(DISTINCT id) FROM {_STAGED_CONVERSATIONS} "
            "WHERE load_id = $load",
            load,
        )
        keep = " AND id NOT IN (SELECT id FROM held_elsewhere)" if held_elsewhere else ""
        values = ", ".join(
            "$start" if c.name == "window_start" else quote(c.name)
            for c in schema.conversations.columns
        )
        where = f"load_id = $load{keep}"
        select = f"SELECT {values} FROM {_STAGED_CONVERSATIONS} WHERE {where}"
        if served_twice:
            select = (
                f"SELECT DISTINCT ON (id) {values} FROM {_STAGED_CONVERSATIONS} WHERE {where} "
                f"ORDER BY id, {PAGE_COLUMN} DESC"
            )
        rows = {
            "conversations": count(
                con,
                f"INSERT INTO conversations ({column_list(schema.conversations)}) {select}",
                {**load, "start": self.key.window.start},
            )
        }
        latest = (
            f" AND (conversation_id, {PAGE_COLUMN}) IN (SELECT id, max({PAGE_COLUMN}) "
            f"FROM {_STAGED_CONVERSATIONS} WHERE load_id = $load GROUP BY id)"
            if served_twice
            else ""
        )
        if held_elsewhere:
            latest += " AND conversation_id NOT IN (SELECT id FROM held_elsewhere)"
        for table in schema.CHILD_TABLES:
            columns = column_list(table)
            rows[table.name] = count(
                con,
                f"INSERT INTO {quote(table.name)} ({columns}) SELECT {columns} "
                f"FROM {quote(STAGE_PREFIX + table.name)} WHERE load_id = $load{latest}",
                load,
            )
        return rows

    def discard(self) -> None:
        """Drop what the window's current load staged, and its state."""
        with self.warehouse.connect() as con:
            con.execute("BEGIN")
            _forget_window(con, self.key)
            con.execute("COMMIT")


def _delete_window(con: Connection, key: WindowKey) -> int:
    """Delete the window's conversations and their children; how many conversations."""
    con.execute(
        f"CREATE TEMP TABLE replaced AS SELECT id FROM conversations WHERE {IN_WINDOW}",
        window_params(key.scope, key.window),
    )
    replaced = count(con, "SELECT count(*) FROM replaced")
    for table in schema.CHILD_TABLES:
        con.execute(
            f"DELETE FROM {quote(table.name)} WHERE conversation_id IN (SELECT id FROM replaced)"
        )
    con.execute("DELETE FROM conversations WHERE id IN (SELECT id FROM replaced)")
    con.execute("DROP TABLE replaced")
    return replaced


def _drop_staged(con: Connection, load_id: str) -> None:
    for table in schema.WINDOW_TABLES:
        con.execute(
            f"DELETE FROM {quote(STAGE_PREFIX + table.name)} WHERE load_id = $load",
            {"load": load_id},
        )


def _forget_window(con: Connection, key: WindowKey) -> None:
    """Drop what the window's current load staged, and its state row."""
    previous = con.execute(
        f"SELECT load_id FROM sync_state WHERE {STATE_OF_WINDOW}", key.params()
    ).fetchone()
    if previous:
        _drop_staged(con, previous[0])
    con.execute(f"DELETE FROM sync_state WHERE {STATE_OF_WINDOW}", key.params())
