"""What the asset modules share: asset keys (their names in :mod:`core.names`), specs, the
column schemas Dagster shows (read from core.schema), and partition keys read as windows."""

from collections.abc import Iterable
from datetime import datetime

from dagster import (
    AssetDep,
    AssetKey,
    AssetSpec,
    FreshnessPolicy,
    MultiPartitionKey,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)

from core import names, schema
from core.names import ANALYTICS_GROUP, DATE_DIMENSION, OWNER, SCOPE_DIMENSION
from core.windows import Scope, Window, window_from_key

CONVERSATIONS = AssetKey(names.CONVERSATIONS)
TURNS = AssetKey(["polyai", "turns"])
TURN_LATENCY = AssetKey(["polyai", "turn_latency"])
TURN_GENAI = AssetKey(["polyai", "turn_genai"])

TABLE_KEYS = {key.path[-1]: key for key in (CONVERSATIONS, TURNS, TURN_LATENCY, TURN_GENAI)}
KPI_KEYS = {table.name: AssetKey(["polyai", table.name]) for table in schema.ANALYTICS_TABLES}
LAKE = AssetKey(["polyai", "lake"])
QA_SAMPLES = AssetKey(["polyai", "qa_samples"])
SAVED_SEARCHES = AssetKey(["polyai", "saved_search_matches"])
SYNC_STATE = AssetKey(["polyai", "sync_state"])
TABLE_DESCRIPTIONS = {
    CONVERSATIONS: "One row per PolyAI conversation, replaced window by window.",
    TURNS: "One row per turn, keyed by (conversation_id, turn_index).",
    TURN_LATENCY: "One row per turn and latency stage (include_latency).",
    TURN_GENAI: "One row per turn of generative-AI metadata (model, tokens, tool calls).",
}


def column_schema(table_name: str) -> TableSchema:
    """The table's columns as Dagster shows them, read from the one schema declaration."""
    table = schema.metadata.tables[table_name]
    return TableSchema(
        columns=[
            TableColumn(
                name=column.name,
                type=str(column.type),
                description=column.comment,
                constraints=TableColumnConstraints(nullable=column.nullable is not False),
            )
            for column in table.columns
        ]
    )


def analytics_spec(
    key: AssetKey,
    kinds: set[str],
    description: str,
    sources: Iterable[AssetKey],
    freshness_policy: FreshnessPolicy | None = None,
    table: str | None = None,
) -> AssetSpec:
    """An asset computed from the window tables: analytics group, owner, its upstream tables,
    and ``table``'s column schema if it has one."""
    return AssetSpec(
        key,
        group_name=ANALYTICS_GROUP,
        kinds=kinds,
        owners=[OWNER],
        description=description,
        deps=[AssetDep(source) for source in sources],
        freshness_policy=freshness_policy,
        metadata={"dagster/column_schema": column_schema(table)} if table else {},
    )


def window_of(key: str) -> tuple[datetime, Scope, Window, MultiPartitionKey]:
    """(start, scope, window, key) of a date|scope partition key (a ``MultiPartitionKey``, or
    its string as a plain job's run carries it)."""
    if not isinstance(key, MultiPartitionKey):
        date_key, _, scope_key = str(key).partition("|")
        if not scope_key:
            raise TypeError(f"expected a date|scope partition key, got {key!r}")
        key = MultiPartitionKey({DATE_DIMENSION: date_key, SCOPE_DIMENSION: scope_key})
    dims = key.keys_by_dimension
    window = window_from_key(dims[DATE_DIMENSION])
    return window.start, Scope.parse(dims[SCOPE_DIMENSION]), window, key
