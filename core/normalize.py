"""Normalize one API page into columnar batches, one per warehouse table.

A page's conversations become one Arrow table for ``conversations`` and one for ``turns``,
with columns and types read from :mod:`core.schema`. Text keeps the API's distinction between
``""`` (empty) and a missing field (null); timestamps become UTC; the whole source object is
kept as JSON in ``raw``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from core import schema


class RecordError(ValueError):
    """A source record that cannot be normalized; the message says which and why."""


@dataclass(frozen=True)
class Batch:
    """The rows one page contributes to each window table."""

    conversations: pa.Table
    turns: pa.Table

    def tables(self) -> dict[str, pa.Table]:
        return {"conversations": self.conversations, "turns": self.turns}


def parse_timestamp(value: Any, what: str) -> datetime | None:
    """An ISO 8601 string as an aware UTC datetime; ``""``/``None`` as ``None``.

    A timestamp without an offset is read as UTC (the v3 API promises UTC ISO 8601).
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what}: expected an ISO 8601 string, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{what}: {value!r} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _intents(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordError(f"intents: expected a list, got {type(value).__name__}")
    return [str(item) for item in value]


# How each typed column is read from a source object. Columns not listed are copied as is.
_CONVERSATION_READERS: dict[str, Callable[[Any], Any]] = {
    "metrics": _json,
    "state": _json,
}
_TURN_READERS: dict[str, Callable[[Any], Any]] = {
    "user_input_datetime": lambda v: parse_timestamp(v, "user_input_datetime"),
    "agent_response_datetime": lambda v: parse_timestamp(v, "agent_response_datetime"),
    "intents": _intents,
    "entities": _json,
}
_ADDED_COLUMNS = {"conversation_date", "raw", "load_id", "loaded_at"}


def _source_columns(table: sa.Table, added: set[str]) -> list[str]:
    return [c.name for c in table.columns if c.name not in added]


_CONVERSATION_FIELDS = _source_columns(schema.conversations, _ADDED_COLUMNS | {"started_at"})
_TURN_FIELDS = _source_columns(
    schema.turns,
    _ADDED_COLUMNS | {"conversation_id", "turn_index", "environment", "channel"},
)


def normalize_page(
    records: Sequence[Mapping[str, Any]], *, load_id: str, loaded_at: datetime
) -> Batch:
    """Turn a page of conversation objects into one batch per table."""
    conv_rows: dict[str, list[Any]] = {c.name: [] for c in schema.conversations.columns}
    turn_rows: dict[str, list[Any]] = {c.name: [] for c in schema.turns.columns}
    for position, record in enumerate(records):
        try:
            _add_conversation(record, conv_rows, turn_rows, load_id, loaded_at)
        except RecordError as exc:
            ident = record.get("id") if isinstance(record, Mapping) else None
            raise RecordError(f"conversation {ident or f'#{position}'}: {exc}") from None
    return Batch(
        conversations=pa.Table.from_pydict(
            conv_rows, schema=schema.arrow_schema(schema.conversations)
        ),
        turns=pa.Table.from_pydict(turn_rows, schema=schema.arrow_schema(schema.turns)),
    )


def _add_conversation(
    record: Mapping[str, Any],
    conv_rows: dict[str, list[Any]],
    turn_rows: dict[str, list[Any]],
    load_id: str,
    loaded_at: datetime,
) -> None:
    if not isinstance(record, Mapping):
        raise RecordError(f"expected an object, got {type(record).__name__}")
    conversation_id = record.get("id")
    if not isinstance(conversation_id, str) or not conversation_id:
        raise RecordError("missing id")
    started_at = parse_timestamp(record.get("started_at"), "started_at")
    if started_at is None:
        raise RecordError("missing started_at")
    for key in ("environment", "channel"):
        if not isinstance(record.get(key), str) or not record.get(key):
            raise RecordError(f"missing {key}")
    turns = record.get("turns", [])
    if not isinstance(turns, list):
        raise RecordError(f"turns: expected a list, got {type(turns).__name__}")
    conversation_date: date = started_at.date()

    for name in _CONVERSATION_FIELDS:
        reader = _CONVERSATION_READERS.get(name)
        value = record.get(name)
        conv_rows[name].append(reader(value) if reader else value)
    conv_rows["started_at"].append(started_at)
    conv_rows["conversation_date"].append(conversation_date)
    conv_rows["raw"].append(_json(record))
    conv_rows["load_id"].append(load_id)
    conv_rows["loaded_at"].append(loaded_at)

    for index, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise RecordError(f"turn {index}: expected an object, got {type(turn).__name__}")
        turn_rows["conversation_id"].append(conversation_id)
        turn_rows["turn_index"].append(index)
        turn_rows["environment"].append(record["environment"])
        turn_rows["channel"].append(record["channel"])
        turn_rows["conversation_date"].append(conversation_date)
        for name in _TURN_FIELDS:
            reader = _TURN_READERS.get(name)
            value = turn.get(name)
            try:
                turn_rows[name].append(reader(value) if reader else value)
            except RecordError as exc:
                raise RecordError(f"turn {index}: {exc}") from None
        turn_rows["raw"].append(_json(turn))
        turn_rows["load_id"].append(load_id)
        turn_rows["loaded_at"].append(loaded_at)
