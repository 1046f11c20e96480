"""One load of one window: begun, staged page by page, then published (or failed).

Each page is *staged* under the load's id (:mod:`resources.warehouse.staging`: in staging
tables inside the page's transaction, or in files just before it) and *committed* in one short
transaction that records the page's cursor in ``sync_state`` and its quarantined records in
``quarantine``: a run that dies resumes from the last committed cursor (after committing the
pages staged in files ahead of it). When the last page is in, the window is *published*: in
one transaction its old rows are deleted and the staged rows inserted, so readers see the old
window or the new one, never a mix, and loading a window twice leaves the same rows as once.

:class:`WindowLoad` is a plain class over the warehouse's connections; the engine supplies
only the bulk insert and the room a large transaction needs.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from core import schema
from core.normalize import Batch
from core.records import Quarantined
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
from resources.warehouse.staging import Staging
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
        staging = self.warehouse.staging
        with self.warehouse.connect() as con:
            con.execute("BEGIN")
            published = con.execute(
                "SELECT CASE WHEN status = 'complete' THEN load_id ELSE published_load_id END, "
                f"completed_at FROM sync_state WHERE {STATE_OF_WINDOW}",
                self.key.params(),
            ).fetchone() or (None, None)
            previous = _forget_window(con, staging, self.key)
            con.execute(
                "INSERT INTO sync_state (account_id, project_id, environment, channel, "
                "window_start, window_end, status, load_id, pages, conversations, quarantined, "
                "in_progress, large_value_bytes, started_at, updated_at, published_load_id, "
                "completed_at) VALUES ($account, $project, $env, $channel, $start, $end, "
                "'running', $load, 0, 0, 0, 0, 0, $now, $now, $published, $completed)",
                {
                    **self.key.params(),
                    "end": self.key.window.end,
                    "load": self.load_id,
                    "now": now,
                    "published": published[0],
                    "completed": published[1],
                },
            )
            con.execute("COMMIT")
        if previous:
            staging.dropped(previous)

    def stage(self, page: int, batch: Batch, next_cursor: str | None) -> None:
        """Commit one page: its rows, its quarantined records and the cursor after it."""
        key, staging = self.key, self.warehouse.staging
        large = batch.large_value_bytes
        if not staging.in_transaction:  # only the quarantined records go into the transaction
            large = batch.quarantined_large_value_bytes
        what = f"{key.describe()} page {page}"
        with (
            self.warehouse.connect() as con,
            self.warehouse.room_for(con, large, what, page=True),
        ):
            if not staging.in_transaction and batch.staged_conversations is None:
                self.stage_rows(page, batch, next_cursor)
            con.execute("BEGIN")
            if staging.in_transaction:
                staging.stage(con, self.load_id, page, batch.tables)
            if batch.quarantined:
                rows = quarantine_rows(
                    key, self.load_id, page, batch.quarantined, datetime.now(UTC)
                )
                self.warehouse.insert(con, "quarantine", rows)
            if not self._advance(con, page, batch, next_cursor):
                con.execute("ROLLBACK")
                owner = con.execute(
                    f"SELECT load_id FROM sync_state WHERE {STATE_OF_WINDOW}", key.params()
                ).fetchall()
                if owner != [(self.load_id,)]:  # its files are nobody's now
                    staging.dropped(self.load_id)
                raise WarehouseError(
                    f"load {self.load_id} no longer owns {key.describe()} page {page}: "
                    "another sync of the same window took it over (or committed the page)"
                )
            con.execute("COMMIT")

    def stage_rows(self, page: int, batch: Batch, next_cursor: str | None) -> Batch:
        """For a staging outside the warehouse's transactions (DuckDB's files): stage the
        page's rows ahead of :meth:`stage`, which commits its cursor, in any process (the
        page feed's child does), with what that commit needs; the batch without them."""
        manifest = _manifest(batch, next_cursor)
        try:
            self.warehouse.staging.stage(None, self.load_id, page, batch.tables, manifest)
            return batch.rows_staged()
        except OSError as exc:
            raise WarehouseError(
                f"cannot stage {self.key.describe()} page {page} in "
                f"{exc.filename or 'the staging folder'}: {exc.strerror or exc}; what was "
                "committed is kept, and a re-run resumes at this page"
            ) from exc

    def commit_staged_ahead(self, pages: int) -> int:
        """Commit the pages staged after page ``pages`` whose commit did not land (staged
        ahead of the writer, which was stopped), as their manifests say; how many."""
        committed = 0
        for manifest in self.warehouse.staging.manifests(self.load_id, pages):
            try:
                batch, cursor = _from_manifest(manifest)
            except (ValueError, KeyError, TypeError):
                break  # not a whole manifest: fetched again
            committed += 1
            self.stage(pages + committed, batch, cursor)
            if cursor is None:
                break
        return committed

    def _advance(self, con: Connection, page: int, batch: Batch, next_cursor: str | None) -> bool:
        """Record the page in the window's state (``staged`` after the last one); whether
        this load still owns the window and the page is its next (a page is committed
        once, whichever sync staged it)."""
        return bool(
            con.execute(
                "UPDATE sync_state SET cursor = $cursor, pages = $page, "
                "conversations = conversations + $rows, quarantined = quarantined + $bad, "
                "in_progress = in_progress + $ongoing, updated_at = $now, "
                "large_value_bytes = coalesce(large_value_bytes, 0) + $large, "
                "status = CASE WHEN CAST($cursor AS VARCHAR) IS NULL THEN 'staged' "
                "ELSE 'running' END "
                f"WHERE {STATE_OF_WINDOW} AND load_id = $load AND status = 'running' "
                "AND pages = $page - 1 "
                "RETURNING 1",
                {
                    **self.key.params(),
                    "cursor": next_cursor,
                    "page": page,
                    "rows": batch.conversation_count,
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
        staging = self.warehouse.staging
        with self.warehouse.connect() as con:
            large, pages = next(
                iter(
                    con.execute(
                        "SELECT coalesce(large_value_bytes, 0), pages FROM sync_state "
                        f"WHERE {STATE_OF_WINDOW}",
                        self.key.params(),
                    ).fetchall()
                ),
                (0, 0),
            )
            with (
                self.warehouse.room_for(
                    con, large, f"publishing {self.key.describe()}", page=False
                ),
                staging.readable(con, self.load_id, pages),
            ):
                con.execute("BEGIN")
                replaced = _delete_window(con, self.key)
                collisions = set_aside_collisions(
                    con, self.warehouse.insert, self.key, self.load_id
                )
                rows = self._insert_staged(con, held_elsewhere=bool(collisions))
                if collisions:
                    con.execute("DROP TABLE held_elsewhere")
                staging.drop(con, self.load_id)
                con.execute(
                    "UPDATE sync_state SET status = 'complete', cursor = NULL, error = NULL, "
                    "published_load_id = load_id, "
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
        staging.dropped(self.load_id)
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

    def fail(self, reason: str, keep_walk: bool) -> None:
        """Record that this load failed, and why (status ``failed``); the window's tables keep
        what they hold. ``keep_walk``: its pages and cursor stay, for the next sync to resume
        after; otherwise they are dropped and the next sync fetches the window afresh."""
        staging = self.warehouse.staging
        reset = ", cursor = NULL, pages = 0, conversations = 0, quarantined = 0, in_progress = 0"
        reset = "" if keep_walk else reset + ", large_value_bytes = 0"
        with self.warehouse.connect() as con:
            con.execute("BEGIN")
            if not keep_walk:
                staging.drop(con, self.load_id)
            now, load = datetime.now(UTC), self.load_id
            con.execute(
                f"UPDATE sync_state SET status = 'failed', error = $reason, updated_at = $now"
                f"{reset} WHERE {STATE_OF_WINDOW} AND load_id = $load",
                {**self.key.params(), "reason": reason, "now": now, "load": load},
            )
            con.execute("COMMIT")
        if not keep_walk:
            staging.dropped(self.load_id)

    def resume(self) -> None:
        """Take up a failed load whose walk was kept (staged again if all its pages are in)."""
        with self.warehouse.connect() as con:
            con.execute(
                "UPDATE sync_state SET error = NULL, updated_at = $now, status = CASE WHEN "
                "cursor IS NULL THEN 'staged' ELSE 'running' END "
                f"WHERE {STATE_OF_WINDOW} AND load_id = $load AND status = 'failed'",
                {**self.key.params(), "now": datetime.now(UTC), "load": self.load_id},
            )

    def discard(self) -> None:
        """Drop what the window's current load staged, and its state."""
        staging = self.warehouse.staging
        with self.warehouse.connect() as con:
            con.execute("BEGIN")
            previous = _forget_window(con, staging, self.key)
            con.execute("COMMIT")
        if previous:
            staging.dropped(previous)


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


def _forget_window(con: Connection, staging: Staging, key: WindowKey) -> str | None:
    """Drop what the window's current load staged, and its state row; that load's id."""
    previous = con.execute(
        f"SELECT load_id FROM sync_state WHERE {STATE_OF_WINDOW}", key.params()
    ).fetchone()
    if previous:
        staging.drop(con, previous[0])
    con.execute(f"DELETE FROM sync_state WHERE {STATE_OF_WINDOW}", key.params())
    return previous[0] if previous else None


def sweep_staged(warehouse: Warehouse) -> None:
    """Remove staged pages no running or staged load owns (a process killed between a
    publish's commit and removing its files leaves them). Done while the connection is open:
    on DuckDB no other process can begin a load meanwhile."""
    with warehouse.connect() as con:
        live = {
            row[0]
            for row in con.execute(
                "SELECT load_id FROM sync_state WHERE status IN ('running', 'staged', 'failed')"
            ).fetchall()
        }
        warehouse.staging.sweep(live)


def _manifest(batch: Batch, next_cursor: str | None) -> bytes:
    """What a page's commit needs, as JSON: its cursor, counts and quarantined records."""
    return json.dumps(
        {
            "next_cursor": next_cursor,
            "conversations": batch.conversation_count,
            "in_progress": batch.in_progress,
            "large_value_bytes": batch.large_value_bytes,
            "quarantined_large_value_bytes": batch.quarantined_large_value_bytes,
            "type_issues": dict(batch.type_issues),
            "quarantined": [dataclasses.astuple(q) for q in batch.quarantined],
        }
    ).encode()


def _from_manifest(manifest: bytes) -> tuple[Batch, str | None]:
    """The page's batch (its rows staged) and cursor, from :func:`_manifest`."""
    page = json.loads(manifest)
    batch = Batch(
        {},
        [Quarantined(*fields) for fields in page["quarantined"]],
        Counter(page["type_issues"]),
        int(page["in_progress"]),
        int(page["conversations"]),
    )
    batch.__dict__["large_value_bytes"] = int(page["large_value_bytes"])
    batch.__dict__["quarantined_large_value_bytes"] = int(page["quarantined_large_value_bytes"])
    return batch, page["next_cursor"]
