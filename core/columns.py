"""Source values fitted to the warehouse schema's column types, as Arrow columns.

A column whose values already have the schema's type goes to Arrow as it is, in one call (the
common case, and the fast one). Any other is fitted value by value: ``"5"`` into an integer
column becomes 5, what cannot be converted becomes null, and each change is counted by
``table.column`` for :attr:`core.normalize.Batch.type_issues`; the value as received stays in
``raw``. Types are read from :mod:`core.schema`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from core import schema
from core.lazy import lazy_module
from core.records import RecordError, parse_timestamp

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")


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


def _is_number(value: Any) -> bool:
    return isinstance(value, float) or _is_int64(value)


def _to_float(value: Any) -> Any:
    """A number written as text, or an integer beyond 64 bits, as a float (a finite one)."""
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return _NOT_CONVERTIBLE
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # beyond any float
            return _NOT_CONVERTIBLE
    else:
        return _NOT_CONVERTIBLE
    return number if math.isfinite(number) else _NOT_CONVERTIBLE


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
    if isinstance(value, list):  # items that are not text: each as its JSON text
        return [item if item is None or isinstance(item, str) else _to_str(item) for item in value]
    return _NOT_CONVERTIBLE


def _to_timestamp(value: Any) -> Any:
    try:
        return parse_timestamp(value, "")
    except RecordError:
        return _NOT_CONVERTIBLE


class Coercer:
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
            self.convert = _to_str_list
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
        elif isinstance(kind, sa.Float):
            self.accepts = _is_number
            self.convert = _to_float
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


_ISO_UTC = r"^[1-8]\d{3}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$"
"""Timestamps Arrow parses exactly as :func:`parse_timestamp` does (with a zone, at most
microseconds, a year far from the ends of Python's range, which an offset could cross): a
column of only these is parsed in one vectorized cast."""
_FAST_TYPES: dict[type, set[type]] = {
    sa.Boolean: {bool},
    sa.Integer: {int},
    sa.Float: {float, int},
    sa.String: {str},
}


class ColumnBuilder:
    """Builds one table's Arrow columns from its source objects, a column at a time.

    A column whose values already have the schema's type is handed to Arrow as it is (the
    common case, and the fast one); any other goes value by value through :class:`Coercer`,
    which converts what it can and counts what it changed, exactly as for one record.
    """

    def __init__(self, table: sa.Table, issues: Counter[str]) -> None:
        self.table = table
        self.schema = schema.arrow_schema(table)
        self.coercers = {c.name: Coercer(c, issues) for c in table.columns}
        self.keys = {c.name: c.info.get("key", c.name) for c in table.columns}
        """Column -> the source field it is read from (its name, unless the schema says)."""

    def column(self, name: str, values: list[Any]) -> pa.Array:
        """Column ``name`` holding ``values``, each fitted to the column's type."""
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
                except (OverflowError, pa.ArrowInvalid):  # an integer beyond 64 bits: value
                    pass  # by value below
        return pa.array([coerce(v) for v in values], arrow_type)

    def table_of(
        self,
        sources: list[Mapping[str, Any]],
        given: dict[str, pa.Array | list[Any]],
        constants: dict[str, Any],
        rows: int | None = None,
    ) -> pa.Table:
        """``sources`` as rows: the columns in ``given`` as they are, ``constants`` repeated,
        every other column read from the source objects by its key (:attr:`keys`). ``rows``
        is the row count when every column is given or constant (and ``sources`` empty)."""
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
                key = self.keys[name]
                arrays.append(self.column(name, [s.get(key) for s in sources]))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _timestamps(values: list[Any], arrow_type: pa.DataType, coerce: Coercer) -> pa.Array:
    if set(map(type, values)) <= {str, type(None)}:
        strings = pa.array(values, pa.string())
        if (
            strings.null_count == len(strings)
            or pc.all(pc.match_substring_regex(strings, _ISO_UTC)).as_py()
        ):
            return pc.cast(strings, arrow_type)
    return pa.array([coerce(v) for v in values], arrow_type)
