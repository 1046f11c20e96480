"""Normalize one API page into columnar batches, one per warehouse table.

A page's conversations become Arrow tables for ``conversations``, ``turns``, ``turn_latency``
and ``turn_genai``, with columns and types read from :mod:`core.schema`. Text keeps the API's
distinction between ``""`` (empty) and a missing field (null); timestamps become UTC; the
source object is kept as JSON in ``raw``, each part once: a conversation's without its
``turns`` (each turn's is in ``turns.raw``), a turn's without its genAI metadata (in
``turn_genai.raw``). Joined back, they are the whole object as received.

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
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from core import api_contract as api
from core import schema
from core.errors import PolyAISyncError
from core.windows import Scope

LARGE_VALUE_BYTES = 16 * 1024
"""A text value this long or longer is *large*: see :attr:`Batch.large_value_bytes`."""


class RecordError(PolyAISyncError, ValueError):
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
    def large_value_bytes(self) -> int:
        """Bytes in text values of :data:`LARGE_VALUE_BYTES` or more, quarantined records
        included: what a warehouse that keeps a transaction's large values in memory until
        it commits (DuckDB) must make room for to stage the page."""
        raws = (len(q.raw.encode()) for q in self.quarantined)
        total = sum(size for size in raws if size >= LARGE_VALUE_BYTES)
        for table in self.tables.values():
            for column in table.columns:
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    lengths = pc.binary_length(column)
                    large = pc.filter(lengths, pc.greater_equal(lengths, LARGE_VALUE_BYTES))
                    total += pc.sum(large).as_py() or 0
        return total

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
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC
        raise RecordError(f"{what}: {value!r} is out of range once in UTC") from None


def to_json(value: Any) -> str | None:
    """A value as JSON text, keys sorted; ``None`` stays ``None`` (SQL null)."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
        return json.dumps(value, ensure_ascii=False, sort_keys=True)


_NOT_CONVERTIBLE = object()
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""What an integer column holds; a larger integer (JSON has no limit) becomes null, reported,
and stays exactly as received in ``raw``."""


def _is_int64(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX
    )


def _to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return _NOT_CONVERTIBLE
    return value if _is_int64(value) else _NOT_CONVERTIBLE


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
            self.accepts = _is_int64
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


_ADDED = {"conversation_date", "raw", "load_id", "loaded_at", "window_start"}
_CHILD_KEY = {"conversation_id", "turn_index", "environment", "channel", "conversation_date"}
_ISO_UTC = r"^[1-8]\d{3}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$"
"""Timestamps Arrow parses exactly as :func:`parse_timestamp` does (with a zone, at most
microseconds, a year far from the ends of Python's range, which an offset could cross): a
column of only these is parsed in one vectorized cast."""
_FAST_TYPES: dict[type, set[type]] = {
    sa.Boolean: {bool},
    sa.Integer: {int},
    sa.String: {str},
}


def _source_columns(table: sa.Table) -> list[sa.Column]:
    """The columns of ``table`` read from the source object of the same name."""
    return [c for c in table.columns if c.name not in _ADDED and c.name not in _CHILD_KEY]


class _ColumnBuilder:
    """Builds one table's Arrow columns from its source objects, a column at a time.

    A column whose values already have the schema's type is handed to Arrow as it is (the
    common case, and the fast one); any other goes value by value through :class:`_Coercer`,
    which converts what it can and counts what it changed, exactly as for one record.
    """

    def __init__(self, table: sa.Table, issues: Counter[str]) -> None:
        self.table = table
        self.schema = schema.arrow_schema(table)
        self.coercers = {c.name: _Coercer(c, issues) for c in table.columns}

    def column(self, name: str, values: list[Any]) -> pa.Array:
        kind = self.table.columns[name].type
        arrow_type = self.schema.field(name).type
        coerce = self.coercers[name]
        if isinstance(kind, sa.JSON):
            return pa.array([to_json(v) for v in values], arrow_type)
        if isinstance(kind, sa.DateTime):
            return _timestamps(values, arrow_type, coerce)
        if isinstance(kind, sa.ARRAY):
            if all(
                v is None or (type(v) is list and all(type(i) is str for i in v)) for v in values
            ):
                return pa.array(values, arrow_type)
        else:
            fast = next((t for base, t in _FAST_TYPES.items() if isinstance(kind, base)), None)
            if fast is not None and set(map(type, values)) - {type(None)} <= fast:
                try:
                    return pa.array(values, arrow_type)
                except OverflowError:  # an integer beyond 64 bits: value by value below
                    pass
        return pa.array([coerce(v) for v in values], arrow_type)

    def table_of(
        self,
        sources: list[Mapping[str, Any]],
        given: dict[str, pa.Array | list[Any]],
        constants: dict[str, Any],
        rows: int | None = None,
    ) -> pa.Table:
        """``sources`` as rows: the columns in ``given`` as they are, ``constants`` repeated,
        every other column read from the source objects by name. ``rows`` is the row count
        when every column is given or constant (and ``sources`` empty)."""
        count = len(sources) if rows is None else rows
        arrays = []
        for field_ in self.schema:
            name = field_.name
            if name in given:
                value = given[name]
                arrays.append(
                    value if isinstance(value, pa.Array) else pa.array(value, field_.type)
                )
            elif name in constants:
                arrays.append(pa.repeat(pa.scalar(constants[name], field_.type), count))
            else:
                arrays.append(self.column(name, [s.get(name) for s in sources]))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _timestamps(values: list[Any], arrow_type: pa.DataType, coerce: _Coercer) -> pa.Array:
    if set(map(type, values)) <= {str, type(None)}:
        strings = pa.array(values, pa.string())
        if (
            strings.null_count == len(strings)
            or pc.all(pc.match_substring_regex(strings, _ISO_UTC)).as_py()
        ):
            return pc.cast(strings, arrow_type)
    return pa.array([coerce(v) for v in values], arrow_type)


def _without(source: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``source`` without ``key``: the part of an object a child table keeps in its own raw."""
    return {k: v for k, v in source.items() if k != key} if key in source else source


def reassemble(
    conversation: Mapping[str, Any],
    turns: Sequence[Mapping[str, Any]],
    genai: Mapping[int, Any],
) -> dict[str, Any]:
    """The source object :func:`normalize_page` split into rows, put back together from their
    ``raw``: the conversation's, its turns' in order, and each turn's genAI metadata (by turn
    index)."""
    return {
        **conversation,
        "turns": [
            {**turn, api.R_GENAI_METADATA: genai[index]} if index in genai else dict(turn)
            for index, turn in enumerate(turns)
        ],
    }


def _started_at(record: Any, scope: Scope | None) -> datetime:
    """Check that a record can be a row at all (of ``scope``, when given), and return when it
    started."""
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
    if scope is not None and (record["environment"], record["channel"]) != (
        scope.environment,
        scope.channel,
    ):
        raise RecordError(
            f"out of scope: environment {record['environment']!r} and channel "
            f"{record['channel']!r}, but the query asked for {scope.key}"
        )
    turns = record.get("turns", [])
    if not isinstance(turns, list):
        raise RecordError(f"turns: expected a list, got {type(turns).__name__}")
    for index, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise RecordError(f"turn {index}: expected an object, got {type(turn).__name__}")
    return started_at


INVALID_TEXT = (
    "text that is not valid Unicode (an unpaired surrogate, from an invalid \\u escape): "
    "it cannot be stored as text; raw has U+FFFD in its place"
)


@dataclass(frozen=True)
class _Unstorable:
    """A record holding text no database can store as text (see :data:`INVALID_TEXT`)."""

    record: Any


def normalize_page(
    records: Sequence[Any], *, load_id: str, loaded_at: datetime, scope: Scope | None = None
) -> Batch:
    """Turn a page of conversation objects into one batch per table; with ``scope`` (the
    query's), a record of another environment or channel is quarantined."""
    try:
        return _normalize(records, load_id, loaded_at, scope)
    except UnicodeEncodeError:
        # Rare (a lenient parse of a body with an invalid escape): find those records and
        # quarantine them, so the rest of the page still loads. Checked only on failure,
        # as the check costs a serialization of the page.
        marked = [r if _storable(r) else _Unstorable(r) for r in records]
        return _normalize(marked, load_id, loaded_at, scope)


def _replacing_invalid_text(text: str) -> str:
    """``text`` with each unpaired surrogate replaced by U+FFFD: neither a text column nor a
    JSON one (which refuses a lone ``\\ud800`` escape too) can hold it."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _quarantine_json(record: Any) -> str:
    """A record set aside, as JSON text a JSON column takes: a value JSON cannot hold (the
    ``NaN`` or ``Infinity`` a lenient parse accepts, an object of no JSON type) as its text."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [finite(v) for v in value]
        return value

    try:
        return json.dumps(record, ensure_ascii=False, default=repr, allow_nan=False)
    except ValueError:
        return json.dumps(finite(record), ensure_ascii=False, default=repr)


def _storable(record: Any) -> bool:
    try:
        json.dumps(record, ensure_ascii=False, default=repr).encode()
    except UnicodeEncodeError:
        return False
    return True


def _normalize(
    records: Sequence[Any], load_id: str, loaded_at: datetime, scope: Scope | None
) -> Batch:
    issues: Counter[str] = Counter()
    quarantined: list[Quarantined] = []
    good: list[Mapping[str, Any]] = []
    starts: list[datetime] = []
    for position, record in enumerate(records):
        if isinstance(record, _Unstorable):
            ident = record.record.get("id") if isinstance(record.record, Mapping) else None
            storable_id = isinstance(ident, str) and ident and _storable(ident)
            raw = _replacing_invalid_text(_quarantine_json(record.record))
            quarantined.append(
                Quarantined(position, ident if storable_id else None, INVALID_TEXT, raw)
            )
            continue
        try:
            starts.append(_started_at(record, scope))
        except RecordError as exc:
            ident = record.get("id") if isinstance(record, Mapping) else None
            raw = _replacing_invalid_text(_quarantine_json(record))
            storable_id = isinstance(ident, str) and ident and _storable(ident)
            quarantined.append(Quarantined(position, ident if storable_id else None, str(exc), raw))
            continue
        good.append(record)
    latest = {record["id"]: position for position, record in enumerate(good)}
    if len(latest) < len(good):
        # A conversation served twice on one page: its later copy is kept (across pages,
        # publishing keeps the latest page's), so its key is never held twice.
        issues["conversations.served_twice_on_a_page"] += len(good) - len(latest)
        kept = sorted(latest.values())
        good, starts = [good[i] for i in kept], [starts[i] for i in kept]

    stamp = {"load_id": load_id, "loaded_at": loaded_at}
    builders = {t.name: _ColumnBuilder(t, issues) for t in schema.WINDOW_TABLES}
    partition = {
        "environment": pa.array([r["environment"] for r in good], pa.string()),
        "channel": pa.array([r["channel"] for r in good], pa.string()),
        "conversation_date": pa.array([s.date() for s in starts], pa.date32()),
    }
    conversations = builders["conversations"].table_of(
        good,
        {
            **partition,
            "started_at": pa.array(starts, pa.timestamp("us", tz="UTC")),
            "raw": [to_json(_without(r, "turns")) for r in good],
        },
        stamp,
    )

    # Turns, each with the position of its conversation in ``good``.
    turns: list[Mapping[str, Any]] = []
    owner: list[int] = []
    turn_index: list[int] = []
    for position, record in enumerate(good):
        its_turns = record.get("turns", [])
        turns.extend(its_turns)
        owner.extend([position] * len(its_turns))
        turn_index.extend(range(len(its_turns)))

    def child_key(owners: list[int], indexes: list[int]) -> dict[str, pa.Array | list[Any]]:
        take = pa.array(owners, pa.int64())
        return {
            "conversation_id": conversations.column("id").take(take).combine_chunks(),
            "turn_index": indexes,
            **{name: column.take(take) for name, column in partition.items()},
        }

    genai: list[Mapping[str, Any]] = []
    genai_turns: list[int] = []
    for position, turn in enumerate(turns):
        metadata = turn.get(api.R_GENAI_METADATA)
        if isinstance(metadata, Mapping):
            genai.append(metadata)
            genai_turns.append(position)
        elif metadata is not None:
            issues[f"turn_genai.{api.R_GENAI_METADATA}"] += 1
    genai_at = set(genai_turns)  # these turns' metadata is in turn_genai.raw
    turn_table = builders["turns"].table_of(
        turns,
        {
            **child_key(owner, turn_index),
            "raw": [
                to_json(_without(t, api.R_GENAI_METADATA) if i in genai_at else t)
                for i, t in enumerate(turns)
            ],
        },
        stamp,
    )

    genai_table = builders["turn_genai"].table_of(
        genai,
        {
            **child_key([owner[i] for i in genai_turns], [turn_index[i] for i in genai_turns]),
            "raw": [to_json(g) for g in genai],
        },
        stamp,
    )

    latency_table = _latency_table(good, builders["turn_latency"], issues, child_key, stamp)
    in_progress = conversations.column("in_progress")
    return Batch(
        {
            "conversations": conversations,
            "turns": turn_table,
            "turn_latency": latency_table,
            "turn_genai": genai_table,
        },
        quarantined,
        issues,
        int(pc.sum(in_progress).as_py() or 0),
    )


def _latency_table(
    good: list[Mapping[str, Any]],
    builder: _ColumnBuilder,
    issues: Counter[str],
    child_key: Callable[[list[int], list[int]], dict[str, pa.Array | list[Any]]],
    stamp: dict[str, Any],
) -> pa.Table:
    """One row per turn and stage of the latency breakdown (``include_latency``).

    A stage given twice for one turn keeps its last value, and an entry for a turn the
    conversation does not have is left out: each is counted in ``type_issues`` and stays in
    ``raw``, and the table's key (conversation, turn, stage) is never held twice.
    """
    rows: dict[tuple[int, int, str], Any] = {}
    coerce_index = builder.coercers["turn_index"]
    for position, record in enumerate(good):
        latency = record.get(api.R_LATENCY)
        if latency is None:
            continue
        entries = latency.get("turns") if isinstance(latency, Mapping) else None
        if not isinstance(entries, list):
            issues[f"turn_latency.{api.R_LATENCY}"] += 1
            continue
        turn_count = len(record.get("turns", []))
        for entry in entries:
            entry_stages = entry.get("stages") if isinstance(entry, Mapping) else None
            index = coerce_index(entry.get("turn_index")) if isinstance(entry, Mapping) else None
            if not isinstance(entry_stages, Mapping) or index is None:
                issues[f"turn_latency.{api.R_LATENCY}"] += 1
                continue
            if not 0 <= index < turn_count:
                issues["turn_latency.turn_index_without_a_turn"] += 1
                continue
            for stage, ms in entry_stages.items():
                key = (position, index, str(stage))
                if key in rows:
                    issues["turn_latency.stage_given_twice"] += 1
                    del rows[key]  # re-inserted last: keys keep the order values arrive in
                rows[key] = ms
    key = child_key([owner for owner, _, _ in rows], [])
    key["turn_index"] = [index for _, index, _ in rows]
    return builder.table_of(
        [],
        {
            **key,
            "stage": [stage for _, _, stage in rows],
            "latency_ms": builder.column("latency_ms", list(rows.values())),
        },
        stamp,
        rows=len(rows),
    )
