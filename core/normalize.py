"""Normalize one API page into columnar batches, one per warehouse table.

A page's conversations become Arrow tables for ``conversations``, ``turns``, ``turn_latency``
and ``turn_genai``, with columns and types read from :mod:`core.schema`. Text keeps the API's
distinction between ``""`` (empty) and a missing field (null); timestamps become UTC; the
source object is kept as JSON in ``raw``, each part once: a conversation's without its
``turns`` (each turn's is in ``turns.raw``), a turn's without its ``metadata`` object (in
``turn_genai.raw``). Joined back, they are the whole object as received.

A response's ``channel`` is an analytics label (``VOICE-SIP``); the rows' ``channel`` is the
configured channel it maps to (:mod:`core.channels`), the label kept in ``channel_label``.

Two kinds of trouble are told apart:

- a record that cannot be a row (not an object, no id, no readable ``started_at``, no
  environment or channel, turns that are not a list of objects) is *quarantined* whole, with
  the reason, and the rest of the page loads (:mod:`core.records`);
- a field whose type differs from the schema's is loaded as far as it can be (``"5"`` into an
  integer column becomes 5; what cannot be converted becomes null) and *reported* in
  ``type_issues``; the original value stays in ``raw`` (:mod:`core.columns`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from core import api_contract as api
from core import schema
from core.channels import DEFAULT_CHANNELS, ChannelMap
from core.columns import INT64_MAX, INT64_MIN, ColumnBuilder, to_json
from core.lazy import lazy_module
from core.records import (
    INVALID_TEXT,
    Quarantined,
    RecordError,
    Unstorable,
    parse_timestamp,
    screen,
    storable,
    turns_of,
)
from core.turn_metadata import typed_metadata
from core.windows import Scope

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "INVALID_TEXT",
    "LARGE_VALUE_BYTES",
    "Batch",
    "Quarantined",
    "RecordError",
    "normalize_page",
    "parse_timestamp",
    "reassemble",
    "to_json",
]

LARGE_VALUE_BYTES = 16 * 1024
"""A text value this long or longer is *large*: see :attr:`Batch.large_value_bytes`."""


@dataclass
class Batch:
    """What one page contributes to each table, and what it could not."""

    tables: dict[str, pa.Table]
    quarantined: list[Quarantined] = field(default_factory=list)
    type_issues: Counter[str] = field(default_factory=Counter)
    """``table.column`` -> how many values were converted or nulled to fit the schema."""
    in_progress: int = 0
    staged_conversations: int | None = None
    """Set once the rows were staged where the page came in (:meth:`rows_staged`): the
    conversations they held. ``None``: the rows are in ``tables``."""

    @property
    def conversations(self) -> pa.Table:
        return self.tables["conversations"]

    @property
    def conversation_count(self) -> int:
        """The page's conversations, whether its rows are still here or already staged."""
        if self.staged_conversations is not None:
            return self.staged_conversations
        return self.conversations.num_rows

    def rows_staged(self) -> Batch:
        """This batch once its rows are staged: what the page's commit still needs (counts,
        quarantined records), without the rows."""
        staged = Batch(
            {},
            self.quarantined,
            self.type_issues,
            self.in_progress,
            self.conversation_count,
        )
        staged.__dict__["large_value_bytes"] = self.large_value_bytes
        staged.__dict__["quarantined_large_value_bytes"] = self.quarantined_large_value_bytes
        return staged

    @cached_property
    def large_value_bytes(self) -> int:
        """Bytes in text values of :data:`LARGE_VALUE_BYTES` or more, quarantined records
        included: what a warehouse that keeps a transaction's large values in memory until
        it commits (DuckDB) must make room for to stage the page."""
        total = self.quarantined_large_value_bytes
        for table in self.tables.values():
            for column in table.columns:
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    lengths = pc.binary_length(column)
                    large = pc.filter(lengths, pc.greater_equal(lengths, LARGE_VALUE_BYTES))
                    total += pc.sum(large).as_py() or 0
        return total

    @cached_property
    def quarantined_large_value_bytes(self) -> int:
        """The part of :attr:`large_value_bytes` in quarantined records."""
        raws = (len(q.raw.encode()) for q in self.quarantined)
        return sum(size for size in raws if size >= LARGE_VALUE_BYTES)

    @property
    def turns(self) -> pa.Table:
        return self.tables["turns"]


ChildKey = Callable[[list[int], list[int]], "dict[str, pa.Array | list[Any]]"]
"""The key columns of a child table's rows, from each row's conversation (its position among
the page's rows) and turn index."""


def _without(source: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``source`` without ``key``: the part of an object a child table keeps in its own raw."""
    return {k: v for k, v in source.items() if k != key} if key in source else source


def reassemble(
    conversation: Mapping[str, Any],
    turns: Sequence[Mapping[str, Any]],
    genai: Mapping[int, Any],
) -> dict[str, Any]:
    """The source object :func:`normalize_page` split into rows, put back together from their
    ``raw``: the conversation's, its turns' in order, and each turn's metadata (by turn
    index)."""
    return {
        **conversation,
        "turns": [
            {**turn, api.T_METADATA: genai[index]} if index in genai else dict(turn)
            for index, turn in enumerate(turns)
        ],
    }


def normalize_page(
    records: Sequence[Any],
    *,
    load_id: str,
    loaded_at: datetime,
    scope: Scope | None = None,
    channels: ChannelMap = DEFAULT_CHANNELS,
) -> Batch:
    """Turn a page of conversation objects into one batch per table; with ``scope`` (the
    query's), a record of another environment, or whose channel label is not one of the
    scope's channel in ``channels``, is quarantined."""
    try:
        return _normalize(records, load_id, loaded_at, scope, channels)
    except UnicodeEncodeError:
        # Rare (a lenient parse of a body with an invalid escape): find those records and
        # quarantine them, so the rest of the page still loads. Checked only on failure,
        # as the check costs a serialization of the page.
        marked = [r if storable(r) else Unstorable(r) for r in records]
        return _normalize(marked, load_id, loaded_at, scope, channels)


def _normalize(
    records: Sequence[Any],
    load_id: str,
    loaded_at: datetime,
    scope: Scope | None,
    channels: ChannelMap,
) -> Batch:
    issues: Counter[str] = Counter()
    screened = screen(records, scope, channels)
    good, starts = _latest_copies(screened.records, screened.starts, issues)
    stamp = {"load_id": load_id, "loaded_at": loaded_at}
    builders = {t.name: ColumnBuilder(t, issues) for t in schema.WINDOW_TABLES}
    partition = {
        "environment": pa.array([r["environment"] for r in good], pa.string()),
        "channel": pa.array(
            [scope.channel] * len(good)
            if scope is not None
            else [channels.channel_of(r["channel"]) for r in good],
            pa.string(),
        ),
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
    child_key = _child_key(conversations, partition)
    turn_table, genai_table = _turn_tables(good, builders, issues, child_key, stamp)
    latency_table = _latency_table(good, builders["turn_latency"], issues, child_key, stamp)
    in_progress = conversations.column("in_progress")
    return Batch(
        {
            "conversations": conversations,
            "turns": turn_table,
            "turn_latency": latency_table,
            "turn_genai": genai_table,
        },
        screened.quarantined,
        issues,
        int(pc.sum(in_progress).as_py() or 0),
    )


def _latest_copies(
    good: list[Mapping[str, Any]], starts: list[datetime], issues: Counter[str]
) -> tuple[list[Mapping[str, Any]], list[datetime]]:
    """``good`` and their ``starts`` with only the last copy of a conversation served twice
    on the page, each dropped copy counted."""
    latest = {record["id"]: position for position, record in enumerate(good)}
    if len(latest) < len(good):
        # A conversation served twice on one page: its later copy is kept (across pages,
        # publishing keeps the latest page's), so its key is never held twice.
        issues["conversations.served_twice_on_a_page"] += len(good) - len(latest)
        kept = sorted(latest.values())
        good, starts = [good[i] for i in kept], [starts[i] for i in kept]
    return good, starts


def _child_key(conversations: pa.Table, partition: dict[str, pa.Array]) -> ChildKey:
    """The child tables' key, read from the rows of ``conversations`` and their partition."""

    def child_key(owners: list[int], indexes: list[int]) -> dict[str, pa.Array | list[Any]]:
        take = pa.array(owners, pa.int64())
        return {
            "conversation_id": conversations.column("id").take(take).combine_chunks(),
            "turn_index": indexes,
            **{name: column.take(take) for name, column in partition.items()},
        }

    return child_key


def _turn_tables(
    good: list[Mapping[str, Any]],
    builders: dict[str, ColumnBuilder],
    issues: Counter[str],
    child_key: ChildKey,
    stamp: dict[str, Any],
) -> tuple[pa.Table, pa.Table]:
    """The ``turns`` table and the ``turn_genai`` table (a turn's ``metadata``, when it is an
    object); a turn's ``raw`` leaves out the metadata ``turn_genai.raw`` holds."""
    # Turns, each with the position of its conversation in ``good``.
    turns: list[Mapping[str, Any]] = []
    owner: list[int] = []
    turn_index: list[int] = []
    for position, record in enumerate(good):
        its_turns = turns_of(record)
        turns.extend(its_turns)
        owner.extend([position] * len(its_turns))
        turn_index.extend(range(len(its_turns)))

    genai, genai_turns = _genai_metadata(turns, issues)
    genai_at = set(genai_turns)  # these turns' metadata is in turn_genai.raw
    turn_table = builders["turns"].table_of(
        turns,
        {
            **child_key(owner, turn_index),
            "raw": [
                to_json(_without(t, api.T_METADATA) if i in genai_at else t)
                for i, t in enumerate(turns)
            ],
        },
        stamp,
    )
    genai_table = builders["turn_genai"].table_of(
        [typed_metadata(g, issues) for g in genai],
        {
            **child_key([owner[i] for i in genai_turns], [turn_index[i] for i in genai_turns]),
            "raw": [to_json(g) for g in genai],
        },
        stamp,
    )
    return turn_table, genai_table


def _genai_metadata(
    turns: list[Mapping[str, Any]], issues: Counter[str]
) -> tuple[list[Mapping[str, Any]], list[int]]:
    """Each turn's metadata that is an object, and the positions of those turns; any
    other metadata is counted (and stays in the turn's ``raw``). A turn without it (the flag
    ignored, or the project sends none) has no ``turn_genai`` row."""
    genai: list[Mapping[str, Any]] = []
    genai_turns: list[int] = []
    for position, turn in enumerate(turns):
        metadata = turn.get(api.T_METADATA)
        if isinstance(metadata, Mapping):
            genai.append(metadata)
            genai_turns.append(position)
        elif metadata is not None:
            issues[f"turn_genai.{api.T_METADATA}"] += 1
    return genai, genai_turns


def _latency_table(
    good: list[Mapping[str, Any]],
    builder: ColumnBuilder,
    issues: Counter[str],
    child_key: ChildKey,
    stamp: dict[str, Any],
) -> pa.Table:
    """One row per turn and stage of the latency breakdown, where a response carries one (an
    assumed shape, :data:`core.api_contract.R_LATENCY_BREAKDOWN`; PolyAI publishes none).

    A stage given twice for one turn keeps its last value, and an entry for a turn the
    conversation does not have is left out: each is counted in ``type_issues`` and stays in
    ``raw``, and the table's key (conversation, turn, stage) is never held twice.
    """
    rows: dict[tuple[int, int, str], Any] = {}
    coerce_index = builder.coercers["turn_index"]
    for position, record in enumerate(good):
        latency = record.get(api.R_LATENCY_BREAKDOWN)
        if latency is None:
            continue
        entries = latency.get("turns") if isinstance(latency, Mapping) else None
        if not isinstance(entries, list):
            issues[f"turn_latency.{api.R_LATENCY_BREAKDOWN}"] += 1
            continue
        turn_count = len(turns_of(record))
        for entry in entries:
            entry_stages = entry.get("stages") if isinstance(entry, Mapping) else None
            index = coerce_index(entry.get("turn_index")) if isinstance(entry, Mapping) else None
            if not isinstance(entry_stages, Mapping) or index is None:
                issues[f"turn_latency.{api.R_LATENCY_BREAKDOWN}"] += 1
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
