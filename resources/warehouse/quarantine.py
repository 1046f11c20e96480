"""Records set aside in the ``quarantine`` table: those that failed validation (a page
brings them, :meth:`resources.warehouse.load.WindowLoad.stage`) and those another window
already holds (found when publishing: :func:`set_aside_collisions`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core import schema
from core.lazy import lazy_module
from core.normalize import Quarantined, reassemble, to_json
from resources.warehouse.sql import PAGE_COLUMN, STAGE_PREFIX, Connection, moment, quote
from resources.warehouse.state import WindowKey

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")

COLLISION = "collision"
"""The reason prefix of a record set aside when publishing: another window holds its id."""

Insert = Callable[[Connection, str, "pa.Table"], int]
"""The engine's bulk insert (:meth:`resources.warehouse.resource.Warehouse.insert`)."""


@dataclass(frozen=True)
class Collision:
    """A conversation a load brought that another window (or scope) already holds."""

    conversation_id: str
    held_by: str
    """``environment.channel window_start`` of the window holding it."""


def quarantine_rows(
    key: WindowKey, load_id: str, page: int, records: list[Quarantined], now: datetime
) -> pa.Table:
    """``records`` as rows of the quarantine table, for page ``page`` of the load."""
    n = len(records)
    return pa.Table.from_pydict(
        {
            "load_id": [load_id] * n,
            "page": [page] * n,
            "position": [r.position for r in records],
            "conversation_id": [r.conversation_id for r in records],
            "environment": [key.scope.environment] * n,
            "channel": [key.scope.channel] * n,
            "window_start": [key.window.start] * n,
            "reason": [r.reason for r in records],
            "raw": [r.raw for r in records],
            "quarantined_at": [now] * n,
        },
        schema=schema.arrow_schema(schema.quarantine),
    )


def set_aside_collisions(
    con: Connection, insert: Insert, key: WindowKey, load_id: str
) -> list[Collision]:
    """Inside publishing, after the window's own rows are gone: the staged conversations
    that another window still holds (left in temp table ``held_elsewhere``), each
    quarantined whole (reassembled from its staged rows) as page 0 of the load."""
    con.execute(
        "CREATE TEMP TABLE held_elsewhere AS SELECT id, environment, channel, window_start "
        f"FROM conversations WHERE id IN (SELECT id FROM {quote(STAGE_PREFIX + 'conversations')} "
        "WHERE load_id = $load)",
        {"load": load_id},
    )
    held = con.execute(
        "SELECT id, environment, channel, window_start FROM held_elsewhere ORDER BY id"
    ).fetchall()
    if not held:
        con.execute("DROP TABLE held_elsewhere")
        return []
    collisions = [
        Collision(ident, f"{env}.{channel} {moment(start)}") for ident, env, channel, start in held
    ]
    records = _staged_records(con, load_id)
    quarantined = [
        Quarantined(
            position,
            c.conversation_id,
            f"{COLLISION}: conversation {c.conversation_id} is already held by window "
            f"{c.held_by}; this load's copy was set aside and that window keeps its own",
            records[c.conversation_id],
        )
        for position, c in enumerate(collisions)
    ]
    insert(con, "quarantine", quarantine_rows(key, load_id, 0, quarantined, datetime.now(UTC)))
    return collisions


def _staged_records(con: Connection, load_id: str) -> dict[str, str]:
    """The staged conversations in ``held_elsewhere`` as received (their latest page's
    copy): each one's ``raw`` with its turns' ``raw`` and their genAI metadata put back."""

    def staged(table: str, columns: str) -> list[Any]:
        key = "id" if table == "conversations" else "conversation_id"
        return con.execute(
            f"SELECT {columns} FROM {quote(STAGE_PREFIX + table)} "
            f"WHERE load_id = $load AND {key} IN (SELECT id FROM held_elsewhere) "
            f"ORDER BY {PAGE_COLUMN}",
            {"load": load_id},
        ).fetchall()

    page_of: dict[str, int] = {}
    conversation_raw: dict[str, Any] = {}
    for ident, page, raw in staged("conversations", f"id, {PAGE_COLUMN}, raw"):
        page_of[ident], conversation_raw[ident] = page, _json(raw)  # the latest page wins
    parts: dict[str, dict[str, dict[int, Any]]] = {"turns": {}, "turn_genai": {}}
    for table, of_table in parts.items():
        for ident, page, index, raw in staged(
            table, f"conversation_id, {PAGE_COLUMN}, turn_index, raw"
        ):
            if page == page_of[ident]:
                of_table.setdefault(ident, {})[index] = _json(raw)
    return {
        ident: to_json(
            reassemble(
                raw,
                [turn for _, turn in sorted(parts["turns"].get(ident, {}).items())],
                parts["turn_genai"].get(ident, {}),
            )
        )
        or "null"
        for ident, raw in conversation_raw.items()
    }


def _json(value: Any) -> Any:
    """A JSON column's value as Python (DuckDB returns text, psycopg the parsed value)."""
    return json.loads(value) if isinstance(value, str | bytes) else value
