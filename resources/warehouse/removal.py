"""Removing rows for good: a person's conversations (erasure) and windows past their retention.

Both remove from every table that can hold them, in one transaction: the window tables, the
quarantine, the QA samples, the saved-search matches, and any load in progress whose staged
pages hold them (that load is discarded: the window's next sync begins it again). An erasure
records itself in ``erasures`` (counts and when; never an id or a number); the KPIs of the
windows it touched are dbt's to rebuild (:func:`sync.forget.forget` has dbt do it next). A
retention run records what it removed in ``retention_removals``, per window and table.

After an erasure (and its lake files) the caller has the engine scrub what a deleted row leaves
behind (:meth:`resources.warehouse.resource.Warehouse.scrub`): DuckDB rewrites its file,
PostgreSQL vacuums the tables.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core import schema
from core.windows import Scope, Window
from resources.warehouse.resource import Warehouse
from resources.warehouse.sql import Connection, count, quote

_KEYED_BY_CONVERSATION = ("qa_samples", "saved_search_matches")
"""Tables outside the window tables that name a conversation."""
_WINDOW_KEYED = (
    *(t.name for t in schema.ANALYTICS_TABLES),
    "qa_samples",
    "saved_search_matches",
    "quarantine",
)
"""Tables whose rows carry their window's (environment, channel, window_start)."""


@dataclass(frozen=True)
class Erased:
    """What an erasure removed."""

    erasure_id: str
    conversations: int
    windows: list[tuple[Scope, Window]]
    rows: dict[str, int] = field(default_factory=dict)
    loads_discarded: int = 0
    ids: frozenset[str] = field(default=frozenset(), repr=False)
    """The conversations removed (kept in memory for the lake's rewrite, never recorded)."""


def erase(
    warehouse: Warehouse,
    ids: Sequence[str],
    numbers: Sequence[str],
    identified_by: str,
    given: int,
) -> Erased:
    """Remove the conversations with these ``ids``, and those from or to these ``numbers``
    (each as it is stored: the caller adds the hashed form), from every table; record the
    erasure (its ``windows``: those they were in, whose KPIs need rebuilding).
    ``identified_by`` and ``given`` (how many identifiers were given) are all the record says
    of what was asked."""
    warehouse.ensure_schema()
    with warehouse.connect() as con:
        con.execute("BEGIN")
        con.execute("CREATE TEMP TABLE _erase_ids (id VARCHAR)")
        con.execute("CREATE TEMP TABLE _erase_numbers (number VARCHAR)")
        for ident in ids:
            con.execute("INSERT INTO _erase_ids VALUES ($v)", {"v": ident})
        for number in numbers:
            con.execute("INSERT INTO _erase_numbers VALUES ($v)", {"v": number})
        _match_numbers(con)
        windows = _windows_of_ids(con)
        ids_found = {row[0] for row in con.execute("SELECT DISTINCT id FROM _erase_ids").fetchall()}
        loads = _discard_loads_holding(con, warehouse)
        rows = _delete_erased(con)
        erased = Erased(
            erasure_id=uuid.uuid4().hex,
            conversations=rows.get("conversations", 0),
            windows=windows,
            rows=rows,
            loads_discarded=len(loads),
            ids=frozenset(ids_found),
        )
        _record_erasure(con, erased, identified_by, given)
        con.execute("DROP TABLE _erase_ids")
        con.execute("DROP TABLE _erase_numbers")
        con.execute("COMMIT")
    for load in loads:
        warehouse.staging.dropped(load)
    return erased


def _contains_any(column: str) -> str:
    """SQL: ``column``'s text holds one of the erased ids or numbers."""
    return (
        f"EXISTS (SELECT 1 FROM (SELECT id AS v FROM _erase_ids UNION ALL "
        f"SELECT number FROM _erase_numbers) AS e WHERE strpos(CAST({column} AS VARCHAR), e.v) > 0)"
    )


def _match_numbers(con: Connection) -> None:
    """Add to ``_erase_ids`` the conversations from or to an erased number (in the tables,
    and in QA samples drawn of conversations the tables may not hold)."""
    con.execute(
        "INSERT INTO _erase_ids SELECT id FROM conversations WHERE from_number IN "
        "(SELECT number FROM _erase_numbers) OR to_number IN (SELECT number FROM _erase_numbers)"
    )
    con.execute(
        "INSERT INTO _erase_ids SELECT conversation_id FROM qa_samples WHERE EXISTS "
        "(SELECT 1 FROM _erase_numbers WHERE strpos(CAST(raw AS VARCHAR), number) > 0)"
    )


def _windows_of_ids(con: Connection) -> list[tuple[Scope, Window]]:
    """The windows (with their end, from the sync state) that hold an erased conversation."""
    found = con.execute(
        "SELECT DISTINCT w.environment, w.channel, w.window_start, s.window_end FROM ("
        "SELECT environment, channel, window_start FROM conversations "
        "WHERE id IN (SELECT id FROM _erase_ids) UNION "
        + " UNION ".join(
            f"SELECT environment, channel, window_start FROM {quote(t)} "
            "WHERE conversation_id IN (SELECT id FROM _erase_ids)"
            for t in _KEYED_BY_CONVERSATION
        )
        + ") AS w LEFT JOIN sync_state s ON s.environment = w.environment AND "
        "s.channel = w.channel AND s.window_start = w.window_start"
    ).fetchall()
    windows = {}
    for environment, channel, start, end in found:
        if start is None:  # a row migrated from before windows were recorded: no KPIs
            continue
        start = start.astimezone(UTC)
        end = end.astimezone(UTC) if end is not None else start + timedelta(days=1)
        windows[(environment, channel, start)] = (Scope(environment, channel), Window(start, end))
    return [windows[k] for k in sorted(windows)]


def _discard_loads_holding(con: Connection, warehouse: Warehouse) -> list[str]:
    """Discard every load in progress whose staging holds an erased conversation or number
    (its window's state goes: the next sync begins the window again), and remove what loads
    no longer in progress left staged; the discarded loads' ids."""
    needles = [
        row[0]
        for row in con.execute(
            "SELECT id FROM _erase_ids UNION SELECT number FROM _erase_numbers"
        ).fetchall()
    ]
    live = [
        row[0]
        for row in con.execute(
            "SELECT load_id FROM sync_state WHERE status IN ('running', 'staged', 'failed')"
        ).fetchall()
    ]
    staging = warehouse.staging
    discarded = [load for load in live if staging.holds(con, load, needles)]
    for load_id in discarded:
        staging.drop(con, load_id)
        con.execute("DELETE FROM sync_state WHERE load_id = $load", {"load": load_id})
    staging.sweep(set(live) - set(discarded))  # (a discarded load's files go after the commit)
    return discarded


def _delete_erased(con: Connection) -> dict[str, int]:
    """Delete the erased conversations' rows everywhere; rows removed per table."""
    erased = "IN (SELECT id FROM _erase_ids)"
    rows = {}
    for table in schema.CHILD_TABLES:
        rows[table.name] = count(
            con, f"DELETE FROM {quote(table.name)} WHERE conversation_id {erased}"
        )
    rows["conversations"] = count(con, f"DELETE FROM conversations WHERE id {erased}")
    for table in _KEYED_BY_CONVERSATION:
        rows[table] = count(con, f"DELETE FROM {quote(table)} WHERE conversation_id {erased}")
    rows["quarantine"] = count(
        con,
        f"DELETE FROM quarantine WHERE conversation_id {erased} OR {_contains_any('raw')} "
        f"OR {_contains_any('reason')}",
    )
    return rows


def _record_erasure(con: Connection, erased: Erased, identified_by: str, given: int) -> None:
    con.execute(
        "INSERT INTO erasures (erasure_id, erased_at, identified_by, identifiers, "
        "conversations, windows, rows_removed, lake_files_rewritten) VALUES "
        "($id, $at, $by, $given, $conversations, $windows, $rows, 0)",
        {
            "id": erased.erasure_id,
            "at": datetime.now(UTC),
            "by": identified_by,
            "given": given,
            "conversations": erased.conversations,
            "windows": len(erased.windows),
            "rows": json.dumps(erased.rows, sort_keys=True),
        },
    )


def record_lake_rewrites(warehouse: Warehouse, erasure_id: str, files: int) -> None:
    """Add the lake files an erasure rewrote to its record."""
    with warehouse.connect() as con:
        con.execute(
            "UPDATE erasures SET lake_files_rewritten = $files WHERE erasure_id = $id",
            {"files": files, "id": erasure_id},
        )


@dataclass(frozen=True)
class Removed:
    """What a retention run removed from the warehouse."""

    removal_id: str
    cutoff: datetime
    rows: dict[tuple[str, str, datetime, str], int]
    """Rows removed per (environment, channel, window start, table)."""


def remove_before(warehouse: Warehouse, cutoff: datetime) -> Removed:
    """Remove every window that starts before ``cutoff`` from every table, and its sync
    state (a load in progress included); record the counts in ``retention_removals``."""
    warehouse.ensure_schema()
    removed: dict[tuple[str, str, datetime, str], int] = {}
    before = {"cutoff": cutoff}
    with warehouse.connect() as con:
        con.execute("BEGIN")
        con.execute(
            "CREATE TEMP TABLE _expired AS SELECT id, environment, channel, window_start "
            f"FROM conversations WHERE {_EXPIRED}",
            before,
        )
        for table, tally, delete in _retention_statements():
            params = before if "$cutoff" in tally else {}  # (DuckDB refuses unused ones)
            for environment, channel, start, rows in con.execute(tally, params).fetchall():
                removed[(environment, channel, start.astimezone(UTC), table)] = int(rows)
            con.execute(delete, params)
        loads = [
            row[0]
            for row in con.execute(
                f"SELECT load_id FROM sync_state WHERE {_EXPIRED}", before
            ).fetchall()
        ]
        for load in loads:
            warehouse.staging.drop(con, load)
        con.execute(f"DELETE FROM sync_state WHERE {_EXPIRED}", before)
        con.execute("DROP TABLE _expired")
        result = Removed(uuid.uuid4().hex, cutoff, removed)
        _record_removals(con, result, removed)  # with the deletes: a crash loses neither
        con.execute("COMMIT")
    for load in loads:
        warehouse.staging.dropped(load)
    return result


_EXPIRED = "window_start < $cutoff"


def _retention_statements() -> list[tuple[str, str, str]]:
    """Per table: its name, the query counting its expired rows per window, the delete."""
    statements = []
    for table in schema.CHILD_TABLES:
        name = quote(table.name)
        statements.append(
            (
                table.name,
                f"SELECT e.environment, e.channel, e.window_start, count(*) FROM {name} t "
                "JOIN _expired e ON t.conversation_id = e.id GROUP BY 1, 2, 3",
                f"DELETE FROM {name} WHERE conversation_id IN (SELECT id FROM _expired)",
            )
        )
    for table in ("conversations", *_WINDOW_KEYED):
        statements.append(
            (
                table,
                f"SELECT environment, channel, window_start, count(*) FROM {quote(table)} "
                f"WHERE {_EXPIRED} GROUP BY 1, 2, 3",
                f"DELETE FROM {quote(table)} WHERE {_EXPIRED}",
            )
        )
    return statements


def record_lake_removals(
    warehouse: Warehouse, removed: Removed, lake_files: dict[tuple[str, str, datetime], int]
) -> None:
    """Add the lake files a retention run removed to its record (table ``lake files``)."""
    rows = {
        (env, channel, start, "lake files"): n for (env, channel, start), n in lake_files.items()
    }
    with warehouse.connect() as con:
        con.execute("BEGIN")
        _record_removals(con, removed, rows)
        con.execute("COMMIT")


def _record_removals(
    con: Connection, removed: Removed, rows: dict[tuple[str, str, datetime, str], int]
) -> None:
    now = datetime.now(UTC)
    for (environment, channel, start, table), count_ in sorted(rows.items()):
        con.execute(
            "INSERT INTO retention_removals VALUES ($id, $env, $channel, $start, $table, "
            "$rows, $cutoff, $now)",
            {
                "id": removed.removal_id,
                "env": environment,
                "channel": channel,
                "start": start,
                "table": table,
                "rows": count_,
                "cutoff": removed.cutoff,
                "now": now,
            },
        )
