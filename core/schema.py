"""The warehouse schema, declared once.

These SQLAlchemy tables are the single source of truth for the warehouse: the warehouse
resource creates them, the normalizer builds Arrow batches whose columns and types are read
from them, and tests compare against them. Tables are declared without a schema; the
warehouse places them in ``WAREHOUSE_SCHEMA`` at run time.

Column names are the API's field names, except where a column names its unit (``latency_s``)
or the API's name is taken by a partition column (the response's ``channel`` label is
``channel_label``): such a column's ``info["key"]`` is the field it is read from. Every data
table also carries the partition columns (``environment``, ``channel`` (the configured
channel, see :mod:`core.channels`), ``conversation_date``) and the load's id and time;
conversations, turns and turn metadata keep their source object as JSON in ``raw``, each byte
once (a conversation's without its turns, a turn's without its metadata): a field the API
adds later is never lost, and can be backfilled without calling the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from core import api_contract as api
from core.lazy import lazy_module

pa = lazy_module("pyarrow")  # only where an Arrow schema is asked for
if TYPE_CHECKING:
    import pyarrow as pa

metadata = sa.MetaData()

TZ_TIMESTAMP = sa.DateTime(timezone=True)


def _raw_column(without: str = "") -> sa.Column:
    comment = "the source object" + (f", without its {without}" if without else "")
    return sa.Column("raw", sa.JSON, nullable=False, comment=comment)


def _load_columns() -> list[sa.Column]:
    return [
        sa.Column("load_id", sa.String, nullable=False, comment="the load that wrote this row"),
        sa.Column("loaded_at", TZ_TIMESTAMP, nullable=False),
    ]


def _child_key_columns() -> list[sa.Column]:
    """A turn's key and the partition columns, shared by every per-turn table."""
    return [
        sa.Column("conversation_id", sa.String, primary_key=True),
        sa.Column("turn_index", sa.Integer, primary_key=True, comment="0-based position in turns"),
        sa.Column("environment", sa.String, nullable=False),
        sa.Column("channel", sa.String, nullable=False),
        sa.Column("conversation_date", sa.Date, nullable=False, comment="UTC date of started_at"),
    ]


conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("account_id", sa.String),
    sa.Column("project_id", sa.String),
    sa.Column("environment", sa.String, nullable=False),
    sa.Column("channel", sa.String, nullable=False),
    sa.Column(
        "channel_label",
        sa.String,
        info={"key": "channel"},
        comment="the channel as the API labelled it (e.g. VOICE-SIP); channel is the "
        "configured channel that label maps to (POLYAI_CHANNEL_MAP)",
    ),
    sa.Column("conversation_date", sa.Date, nullable=False, comment="UTC date of started_at"),
    sa.Column("started_at", TZ_TIMESTAMP, nullable=False),
    sa.Column(
        "window_start",
        TZ_TIMESTAMP,
        comment="the window whose load holds this row (its query returned it): re-syncing "
        "that window, and no other, replaces it",
    ),
    sa.Column("in_progress", sa.Boolean),
    sa.Column("variant_id", sa.String),
    sa.Column("variant_name", sa.String),
    sa.Column("from_number", sa.String, comment="personal data"),
    sa.Column("to_number", sa.String, comment="personal data"),
    sa.Column(
        "num_turns",
        sa.Integer,
        comment="turns the conversation had, even when turns are hidden (transcript access off)",
    ),
    sa.Column("total_duration", sa.Integer, comment="seconds"),
    sa.Column("polyai_duration", sa.Integer, comment="seconds"),
    sa.Column("num_silences", sa.Integer),
    sa.Column("num_ood", sa.Integer),
    sa.Column("handoff", sa.Boolean),
    sa.Column("handoff_reason", sa.String),
    sa.Column("handoff_destination", sa.String),
    sa.Column(
        "metrics", sa.JSON, comment="name -> a string, or a list of strings if written twice"
    ),
    sa.Column("state", sa.JSON),
    _raw_column(without="turns (in turns.raw)"),
    *_load_columns(),
)

turns = sa.Table(
    "turns",
    metadata,
    *_child_key_columns(),
    sa.Column("user_input", sa.String, comment="personal data"),
    sa.Column("user_input_dtmf", sa.String),
    sa.Column("agent_response", sa.String),
    sa.Column("user_input_datetime", TZ_TIMESTAMP),
    sa.Column("agent_response_datetime", TZ_TIMESTAMP),
    sa.Column(
        "latency_s",
        sa.Double,
        info={"key": api.T_LATENCY},
        comment="the API's turn latency, in seconds (a float; from include_latency)",
    ),
    sa.Column("barge_in", sa.Boolean, comment="whether the user interrupted the agent"),
    sa.Column("translated_user_input", sa.String),
    sa.Column("english_agent_response", sa.String),
    sa.Column("intents", sa.ARRAY(sa.String)),
    sa.Column("entities", sa.JSON),
    sa.Column("is_ood", sa.Boolean),
    sa.Column("is_silence", sa.Boolean),
    _raw_column(without="metadata (in turn_genai.raw)"),
    *_load_columns(),
)

turn_latency = sa.Table(
    "turn_latency",
    metadata,
    *_child_key_columns(),
    sa.Column("stage", sa.String, primary_key=True, comment="e.g. speech_recognition, model"),
    sa.Column("latency_ms", sa.Integer),
    *_load_columns(),
    comment="one row per turn and stage, from a latency breakdown PolyAI does not publish "
    "(assumed shape): empty unless a response carries one",
)

turn_genai = sa.Table(
    "turn_genai",
    metadata,
    *_child_key_columns(),
    sa.Column("model", sa.String),
    sa.Column("input_tokens", sa.Integer),
    sa.Column("output_tokens", sa.Integer),
    sa.Column("time_to_first_token_ms", sa.Integer),
    sa.Column("function_calls", sa.JSON, comment="functionEvents"),
    sa.Column("knowledge_topics", sa.ARRAY(sa.String), comment="retrievedTopics"),
    sa.Column("cited_topic", sa.String, comment="citedTopic"),
    sa.Column("node_trace", sa.JSON, comment="nodeTrace"),
    sa.Column("llm_requests", sa.JSON, comment="llmRequests"),
    _raw_column(),
    *_load_columns(),
    comment="one row per turn whose metadata is an object (include_turn_metadata); the keys "
    "inside it are not published (core.api_contract.TURN_METADATA_KEYS): every column may "
    "be null",
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("account_id", sa.String, primary_key=True),
    sa.Column("project_id", sa.String, primary_key=True),
    sa.Column("environment", sa.String, primary_key=True),
    sa.Column("channel", sa.String, primary_key=True),
    sa.Column("window_start", TZ_TIMESTAMP, primary_key=True),
    sa.Column("window_end", TZ_TIMESTAMP, nullable=False),
    sa.Column("status", sa.String, nullable=False, comment="running, staged, complete, failed"),
    sa.Column("load_id", sa.String, nullable=False),
    sa.Column("cursor", sa.String, comment="of the page after the last committed one"),
    sa.Column("pages", sa.Integer, nullable=False),
    sa.Column("conversations", sa.Integer, nullable=False, comment="staged so far"),
    sa.Column("quarantined", sa.Integer, nullable=False),
    sa.Column("in_progress", sa.Integer, nullable=False, comment="conversations in progress"),
    sa.Column(
        "replaced_conversations",
        sa.Integer,
        comment="conversations the window held before its last publish",
    ),
    sa.Column(
        "collisions",
        sa.Integer,
        comment="conversations the last load brought that another window holds (quarantined)",
    ),
    sa.Column(
        "large_value_bytes",
        sa.BigInteger,
        comment="bytes staged in text values of 16 KiB or more (DuckDB holds them to publish)",
    ),
    sa.Column("started_at", TZ_TIMESTAMP, nullable=False),
    sa.Column("updated_at", TZ_TIMESTAMP, nullable=False),
    sa.Column("completed_at", TZ_TIMESTAMP, comment="when the published load was published"),
    sa.Column("published_load_id", sa.String, comment="the load the window's tables hold"),
    sa.Column("error", sa.String, comment="why the last load failed (status failed)"),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("load_id", sa.String, primary_key=True),
    sa.Column("page", sa.Integer, primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, comment="index in the page"),
    sa.Column("conversation_id", sa.String, comment="when the record had one"),
    sa.Column("environment", sa.String, nullable=False, comment="of the window's scope"),
    sa.Column("channel", sa.String, nullable=False),
    sa.Column("window_start", TZ_TIMESTAMP, nullable=False),
    sa.Column("reason", sa.String, nullable=False),
    sa.Column("raw", sa.JSON, nullable=False, comment="the record exactly as received"),
    sa.Column("quarantined_at", TZ_TIMESTAMP, nullable=False),
)


def _analytics_key_columns() -> list[sa.Column]:
    return [
        sa.Column("environment", sa.String, primary_key=True),
        sa.Column("channel", sa.String, primary_key=True),
        sa.Column("window_start", TZ_TIMESTAMP, primary_key=True),
        sa.Column("conversation_date", sa.Date, nullable=False),
    ]


conversation_kpis = sa.Table(
    "conversation_kpis",
    metadata,
    *_analytics_key_columns(),
    sa.Column("variant_id", sa.String, primary_key=True),
    sa.Column("variant_name", sa.String),
    sa.Column("conversations", sa.Integer, nullable=False),
    sa.Column("finished", sa.Integer, nullable=False),
    sa.Column("in_progress", sa.Integer, nullable=False),
    sa.Column("handoffs", sa.Integer, nullable=False),
    sa.Column("containment_rate", sa.Double, comment="finished without a hand-off / finished"),
    sa.Column("handoffs_by_reason", sa.JSON),
    sa.Column("handoffs_by_destination", sa.JSON),
    sa.Column("mean_duration_s", sa.Double),
    sa.Column("p50_duration_s", sa.Double),
    sa.Column("p95_duration_s", sa.Double),
    sa.Column("turns_per_conversation", sa.Double),
    sa.Column("silence_rate", sa.Double, comment="silent turns / turns"),
    sa.Column("ood_rate", sa.Double, comment="out-of-domain turns / turns"),
    sa.Column("computed_at", TZ_TIMESTAMP, nullable=False),
    comment="per window, scope and variant",
)

latency_kpis = sa.Table(
    "latency_kpis",
    metadata,
    *_analytics_key_columns(),
    sa.Column("stage", sa.String, primary_key=True, comment="'overall' or a latency stage"),
    sa.Column("turns", sa.Integer, nullable=False),
    sa.Column("p50_ms", sa.Double),
    sa.Column("p90_ms", sa.Double),
    sa.Column("p95_ms", sa.Double),
    sa.Column("p99_ms", sa.Double),
    sa.Column("computed_at", TZ_TIMESTAMP, nullable=False),
    comment="per window, scope and stage",
)

genai_kpis = sa.Table(
    "genai_kpis",
    metadata,
    *_analytics_key_columns(),
    sa.Column("model", sa.String, primary_key=True),
    sa.Column("turns", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("p50_time_to_first_token_ms", sa.Double),
    sa.Column("p95_time_to_first_token_ms", sa.Double),
    sa.Column("tool_calls", sa.Integer, nullable=False),
    sa.Column("computed_at", TZ_TIMESTAMP, nullable=False),
    comment="per window, scope and model",
)

qa_samples = sa.Table(
    "qa_samples",
    metadata,
    *_analytics_key_columns(),
    sa.Column("conversation_id", sa.String, primary_key=True),
    sa.Column("started_at", TZ_TIMESTAMP, nullable=False),
    sa.Column("num_turns", sa.Integer),
    sa.Column("handoff", sa.Boolean),
    sa.Column("transcript", sa.String, comment="'user: ...' / 'agent: ...' lines, for review"),
    sa.Column("raw", sa.JSON, nullable=False),
    sa.Column("sampled_at", TZ_TIMESTAMP, nullable=False),
    comment="a random sample per window and scope, drawn with the API's sample=random mode",
)

saved_search_matches = sa.Table(
    "saved_search_matches",
    metadata,
    *_analytics_key_columns(),
    sa.Column("search", sa.String, primary_key=True, comment="the saved search's name"),
    sa.Column("conversation_id", sa.String, primary_key=True),
    sa.Column("query_type", sa.String, nullable=False),
    sa.Column("query", sa.String, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False, comment="1 = the API's first result"),
    sa.Column("matched_turn_index", sa.Integer, comment="first turn containing the text"),
    sa.Column("matched_text", sa.String),
    sa.Column("searched_at", TZ_TIMESTAMP, nullable=False),
    comment="each configured search's matches per window and scope",
)

retention_removals = sa.Table(
    "retention_removals",
    metadata,
    sa.Column("removal_id", sa.String, primary_key=True, comment="one per retention run"),
    sa.Column("environment", sa.String, primary_key=True),
    sa.Column("channel", sa.String, primary_key=True),
    sa.Column("window_start", TZ_TIMESTAMP, primary_key=True),
    sa.Column("table_name", sa.String, primary_key=True, comment="a table, or 'lake files'"),
    sa.Column("rows", sa.Integer, nullable=False, comment="rows (or lake files) removed"),
    sa.Column("cutoff", TZ_TIMESTAMP, nullable=False, comment="windows before it were removed"),
    sa.Column("removed_at", TZ_TIMESTAMP, nullable=False),
    comment="what POLYAI_RETENTION_DAYS removed: per run, window and table",
)

erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("erasure_id", sa.String, primary_key=True),
    sa.Column("erased_at", TZ_TIMESTAMP, nullable=False),
    sa.Column(
        "identified_by", sa.String, nullable=False, comment="conversation_id or phone_number"
    ),
    sa.Column("identifiers", sa.Integer, nullable=False, comment="how many were given"),
    sa.Column("conversations", sa.Integer, nullable=False, comment="conversations removed"),
    sa.Column("windows", sa.Integer, nullable=False, comment="windows touched (KPIs recomputed)"),
    sa.Column("rows_removed", sa.JSON, nullable=False, comment="per table"),
    sa.Column("lake_files_rewritten", sa.Integer, nullable=False),
    comment="each `polyai-sync forget`: what and when, never the ids or numbers themselves",
)

ANALYTICS_TABLES = (conversation_kpis, latency_kpis, genai_kpis)
"""Tables recomputed from the window tables, one window at a time."""

WINDOW_TABLES = (conversations, turns, turn_latency, turn_genai)
"""Tables whose rows a window sync replaces, the parent first."""
CHILD_TABLES = (turns, turn_latency, turn_genai)
"""Per-turn tables, keyed by conversation_id (and replaced with their conversation)."""


def create_statements(
    dialect: sa.engine.Dialect, unenforced_keys: tuple[sa.Table, ...] = ()
) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for every table, unqualified: run them after selecting
    the warehouse's schema (DuckDB's ``USE``).

    Tables in ``unenforced_keys`` are created without their primary key constraint (key
    columns stay ``NOT NULL``): the per-turn tables in DuckDB, whose index maintenance costs
    more than the rest of their load, and whose keys the load guarantees and a check verifies.
    """
    statements = []
    for table in metadata.sorted_tables:
        if table in unenforced_keys:
            table = sa.Table(
                table.name,
                sa.MetaData(),
                *(
                    sa.Column(
                        c.name,
                        c.type,
                        nullable=not c.primary_key and c.nullable is not False,
                        comment=c.comment,
                    )
                    for c in table.columns
                ),
                comment=table.comment,
            )
        statements.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
    return statements


def _arrow_type(column: sa.Column) -> pa.DataType:
    # JSON first (a JSON value travels as serialized text, cast on insert), String last.
    for kind, arrow in (
        (sa.JSON, pa.string()),
        (sa.ARRAY, pa.list_(pa.string())),
        (sa.DateTime, pa.timestamp("us", tz="UTC")),
        (sa.Date, pa.date32()),
        (sa.Boolean, pa.bool_()),
        (sa.Integer, pa.int64()),
        (sa.Float, pa.float64()),
        (sa.String, pa.string()),
    ):
        if isinstance(column.type, kind):
            return arrow
    raise TypeError(f"no Arrow type for column {column.table.name}.{column.name} ({column.type})")


def arrow_schema(table: sa.Table) -> pa.Schema:
    """The Arrow schema of a batch destined for ``table``, column for column."""
    return pa.schema(
        [pa.field(c.name, _arrow_type(c), nullable=c.nullable is not False) for c in table.columns]
    )
