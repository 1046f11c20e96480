"""Which records of a page can become rows, and how the others are set aside.

A record that cannot be a row (not an object, no id, no readable ``started_at``, no
environment or channel, of another scope than the query's or with a channel label no
configured channel has, turns that are not a list of objects, text no database can store) is
*quarantined* whole: kept as JSON with its position
in the page and the reason, so the rest of the page still loads. :mod:`core.normalize` turns
the records admitted here into rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.channels import DEFAULT_CHANNELS, ChannelMap
from core.env import Env
from core.errors import PolyAISyncError
from core.windows import Scope


class RecordError(PolyAISyncError, ValueError):
    """A source record that cannot be normalized; the message says why."""


@dataclass(frozen=True)
class Quarantined:
    """A record set aside: where it was in the page, why, and the record as received."""

    position: int
    conversation_id: str | None
    reason: str
    raw: str


INVALID_TEXT = (
    "text that is not valid Unicode (an unpaired surrogate, from an invalid \\u escape): "
    "it cannot be stored as text; raw has U+FFFD in its place"
)


@dataclass(frozen=True)
class Unstorable:
    """A record holding text no database can store as text (see :data:`INVALID_TEXT`)."""

    record: Any


@dataclass
class Screened:
    """A page's records sorted: those that can be rows, when each started, and the rest."""

    records: list[Mapping[str, Any]]
    starts: list[datetime]
    quarantined: list[Quarantined]


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


def screen(
    records: Sequence[Any], scope: Scope | None, channels: ChannelMap = DEFAULT_CHANNELS
) -> Screened:
    """Sort a page's records into those that can be rows (of ``scope``, when given, its
    channel's labels read from ``channels``), with when each started, and those quarantined,
    in page order."""
    screened = Screened([], [], [])
    for position, record in enumerate(records):
        if isinstance(record, Unstorable):
            screened.quarantined.append(_quarantined(position, record.record, INVALID_TEXT))
            continue
        try:
            screened.starts.append(_started_at(record, scope, channels))
        except RecordError as exc:
            screened.quarantined.append(_quarantined(position, record, str(exc)))
            continue
        screened.records.append(record)
    return screened


def _started_at(record: Any, scope: Scope | None, channels: ChannelMap) -> datetime:
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
        value = record.get(key)
        if value is None or value == "":
            raise RecordError(f"missing {key}")
        if not isinstance(value, str):
            raise RecordError(f"{key}: expected a string, got {type(value).__name__}")
    if scope is not None:
        _check_scope(record["environment"], record["channel"], scope, channels)
    turns = turns_of(record)
    if not isinstance(turns, list):
        raise RecordError(f"turns: expected a list, got {type(turns).__name__}")
    for index, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise RecordError(f"turn {index}: expected an object, got {type(turn).__name__}")
    return started_at


def turns_of(record: Mapping[str, Any]) -> Any:
    """The record's turns: ``turns`` absent or null reads as none (a conversation in progress
    may have none yet; the contract allows an empty list), anything else as it is."""
    turns = record.get("turns")
    return [] if turns is None else turns


def _check_scope(environment: str, label: str, scope: Scope, channels: ChannelMap) -> None:
    """Refuse a record the query did not ask for, naming the label mapping it was read by."""
    if channels.accepts(scope.channel, label):
        if environment == scope.environment:
            return
        raise RecordError(
            f"out of scope: environment {environment!r}, but the query asked for {scope.key}"
        )
    owner = channels.channel_of(label)
    mapping = channels.describe(scope.channel)
    if owner == label and owner not in channels.labels:
        raise RecordError(
            f"unknown channel label {label!r}: the query asked for {scope.key} ({mapping}) "
            f"and no other channel has it; if it is {scope.channel!r}, add it to "
            f"{Env.POLYAI_CHANNEL_MAP}"
        )
    raise RecordError(
        f"out of scope: environment {environment!r} and channel label {label!r} (channel "
        f"{owner!r}), but the query asked for {scope.key} ({mapping})"
    )


def _quarantined(position: int, record: Any, reason: str) -> Quarantined:
    """``record`` set aside, with its id only when that id can be stored as text."""
    ident = record.get("id") if isinstance(record, Mapping) else None
    storable_id = isinstance(ident, str) and ident and storable(ident)
    raw = _replacing_invalid_text(_quarantine_json(record))
    return Quarantined(position, ident if storable_id else None, reason, raw)


def storable(record: Any) -> bool:
    """Whether ``record`` holds only text a database can store (no unpaired surrogate)."""
    try:
        json.dumps(record, ensure_ascii=False, default=repr).encode()
    except UnicodeEncodeError:
        return False
    return True


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
