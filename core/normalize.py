"""Normalize one API page into columnar batches, one per warehouse table.

A page's conversations become Arrow tables for ``conversations``, ``turns``, ``turn_latency``
and ``turn_genai``, with columns and types read from :mod:`core.schema`. Text keeps the API's
distinction between ``""`` (empty) and a missing field (null); timestamps become UTC; the
whole source object is kept as JSON in ``raw``.

Two kinds of trouble are told apart:

- a record that cannot be a row (not an object, no id, no readable ``started_at``, no
  environment or channel, turns that are not a list of objects) is *quarantined* whole, with
  the reason, and the rest of the page loads;
- a field whose type differs from the schema's is loaded as far as it can be (``"5"`` into an
  integer column becomes 5; what cannot be converted becomes null) and *reported* in
  ``type_issues``; the original value stays in ``raw``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from core import api_contract as api
from core import schema


class RecordError(ValueError):
    """A source record that cannot be normalized; the message says why."""


@dataclass(frozen=True)
class Quarantined:
    """A record set aside: where it was in the page, why, and the record as received."""

    position: int
    conversation_id: str | None
    reason: str
    raw: str


@dataclass
class Batch:
    """What one page contributes to each table, and what it could not."""

    tables: dict[str, pa.Table]
    quarantined: list[Quarantined] = field(default_factory=list)
    type_issues: Counter[str] = field(default_factory=Counter)
    """``table.column`` -> how many values were converted or nulled to fit the schema."""
    in_progress: int = 0

    @property
    def conversations(self) -> pa.Table:
        return self.tables["conversations"]

    @property
    def turns(self) -> pa.Table:
        return self.tables["turns"]


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


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


_NOT_CONVERTIBLE = object()


def _to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return _NOT_CONVERTIBLE
    return _NOT_CONVERTIBLE


def _to_bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return _NOT_CONVERTIBLE


def _to_str(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, dict | list):
        return to_json(value)
    return _NOT_CONVERTIBLE


def _to_str_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    return _NOT_CONVERTIBLE


def _to_timestamp(value: Any) -> Any:
    try:
        return parse_timestamp(value, "")
    except RecordError:
        return _NOT_CONVERTIBLE


class _Coercer:
    """Fits one source value to one column's type, counting what it had to change."""

    def __init__(self, column: sa.Column, issues: Counter[str]) -> None:
        kind = column.type
        self.label = f"{column.table.name}.{column.name}"
        self.issues = issues
        self.convert: Callable[[Any], Any]
        if isinstance(kind, sa.JSON):
            self.accepts: Callable[[Any], bool] = lambda v: True
            self.convert = to_json
            self.always_convert = True
            return
        self.always_convert = False
        if isinstance(kind, sa.ARRAY):
            self.accepts = lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v)
            self.convert = lambda v: [str(i) for i in v] if isinstance(v, list) else _to_str_list(v)
        elif isinstance(kind, sa.DateTime):
            self.accepts = lambda v: False  # strings are always parsed
            self.convert = _to_timestamp
            self.always_convert = True
        elif isinstance(kind, sa.Boolean):
            self.accepts = lambda v: isinstance(v, bool)
            self.convert = _to_bool
        elif isinstance(kind, sa.Integer):
            self.accepts = lambda v: isinstance(v, int) and not isinstance(v, bool)
            self.convert = _to_int
        else:
            self.accepts = lambda v: isinstance(v, str)
            self.convert = _to_str

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        if self.always_convert:
            result = self.convert(value)
        elif self.accepts(value):
            return value
        else:
            result = self.convert(value)
            if result is not _NOT_CONVERTIBLE:
                self.issues[self.label] += 1
                return result
        if result is _NOT_CONVERTIBLE:
            self.issues[self.label] += 1
            return None
        return result


_ADDED = {"conversation_date", "raw", "load_id", "loaded_at"}
_CHILD_KEY = {"conversation_id", "turn_index", "environment", "channel", "conversation_date"}


class _PageNormalizer:
    def __init__(self, load_id: str, loaded_at: datetime) -> None:
        self.load_id = load_id
        self.loaded_at = loaded_at
        self.issues: Counter[str] = Counter()
        self.columns = {t.name: {c.name: [] for c in t.columns} for t in schema.WINDOW_TABLES}
        self.coercers = {
            t.name: {c.name: _Coercer(c, self.issues) for c in t.columns}
            for t in schema.WINDOW_TABLES
        }
        self.quarantined: list[Quarantined] = []
        self.in_progress = 0

    def add(self, position: int, record: Any) -> None:
        try:
            rows = self._rows(record)
        except RecordError as exc:
            ident = record.get("id") if isinstance(record, Mapping) else None
            self.quarantined.append(
                Quarantined(
                    position,
                    ident if isinstance(ident, str) and ident else None,
                    str(exc),
                    json.dumps(record, ensure_ascii=False, default=repr),
                )
            )
            return
        for table, table_rows in rows.items():
            columns = self.columns[table]
            for row in table_rows:
                for name, values in columns.items():
                    values.append(row.get(name))
        if rows["conversations"][0].get("in_progress"):
            self.in_progress += 1

    def _rows(self, record: Any) -> dict[str, list[dict[str, Any]]]:
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
        for index, turn in enumerate(turns):
            if not isinstance(turn, Mapping):
                raise RecordError(f"turn {index}: expected an object, got {type(turn).__name__}")

        key = {
            "environment": record["environment"],
            "channel": record["channel"],
            "conversation_date": started_at.date(),
        }
        stamp = {"load_id": self.load_id, "loaded_at": self.loaded_at}
        conversation = self._typed("conversations", record, skip={"started_at"})
        conversation.update(key, started_at=started_at, raw=to_json(record), **stamp)
        rows: dict[str, list[dict[str, Any]]] = {
            "conversations": [conversation],
            "turns": [],
            "turn_latency": [],
            "turn_genai": [],
        }
        for index, turn in enumerate(turns):
            child_key = {"conversation_id": conversation_id, "turn_index": index, **key}
            typed_turn = self._typed("turns", turn)
            typed_turn.update(child_key, raw=to_json(turn), **stamp)
            rows["turns"].append(typed_turn)
            genai = turn.get(api.R_GENAI_METADATA)
            if isinstance(genai, Mapping):
                row = self._typed("turn_genai", genai)
                row.update(child_key, raw=to_json(genai), **stamp)
                rows["turn_genai"].append(row)
            elif genai is not None:
                self.issues[f"turn_genai.{api.R_GENAI_METADATA}"] += 1
        rows["turn_latency"] = self._latency_rows(record, key, conversation_id, stamp)
        return rows

    def _typed(
        self, table: str, source: Mapping[str, Any], skip: set[str] = frozenset()
    ) -> dict[str, Any]:
        coercers = self.coercers[table]
        return {
            name: coerce(source.get(name))
            for name, coerce in coercers.items()
            if name not in _ADDED and name not in _CHILD_KEY and name not in skip
        }

    def _latency_rows(
        self,
        record: Mapping[str, Any],
        key: dict[str, Any],
        conversation_id: str,
        stamp: dict[str, Any],
    ) -> list[dict[str, Any]]:
        latency = record.get(api.R_LATENCY)
        if latency is None:
            return []
        entries = latency.get("turns") if isinstance(latency, Mapping) else None
        if not isinstance(entries, list):
            self.issues[f"turn_latency.{api.R_LATENCY}"] += 1
            return []
        coerce_ms = self.coercers["turn_latency"]["latency_ms"]
        coerce_index = self.coercers["turn_latency"]["turn_index"]
        rows = []
        for entry in entries:
            stages = entry.get("stages") if isinstance(entry, Mapping) else None
            index = coerce_index(entry.get("turn_index")) if isinstance(entry, Mapping) else None
            if not isinstance(stages, Mapping) or index is None:
                self.issues[f"turn_latency.{api.R_LATENCY}"] += 1
                continue
            for stage, ms in stages.items():
                rows.append(
                    {
                        "conversation_id": conversation_id,
                        "turn_index": index,
                        **key,
                        "stage": str(stage),
                        "latency_ms": coerce_ms(ms),
                        **stamp,
                    }
                )
        return rows

    def batch(self) -> Batch:
        tables = {
            table.name: pa.Table.from_pydict(
                self.columns[table.name], schema=schema.arrow_schema(table)
            )
            for table in schema.WINDOW_TABLES
        }
        return Batch(tables, self.quarantined, self.issues, self.in_progress)


def normalize_page(records: Sequence[Any], *, load_id: str, loaded_at: datetime) -> Batch:
    """Turn a page of conversation objects into one batch per table."""
    page = _PageNormalizer(load_id, loaded_at)
    for position, record in enumerate(records):
        page.add(position, record)
    return page.batch()
