"""The QA sample: each window, a random sample of conversations per scope drawn through the
API's ``sample=random`` mode, for people to review. Written to ``qa_samples`` in the
warehouse and as one CSV per window in the lake."""

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, MultiPartitionsDefinition

from assets.analytics import window_asset
from assets.keys import CONVERSATIONS, QA_SAMPLES, analytics_spec
from core import schema
from core.normalize import normalize_page, to_json
from core.query import ConversationQuery
from core.windows import Scope, Window
from resources.lake import ParquetLake
from resources.polyai_api import PolyAIClient
from resources.warehouse import Warehouse


def qa_sample_asset(
    partitions_def: MultiPartitionsDefinition, windows_per_run: int, size: int
) -> AssetsDefinition:
    spec = analytics_spec(
        QA_SAMPLES,
        {"duckdb", "csv"},
        f"A random sample of {size} conversations (POLYAI_QA_SAMPLE_SIZE) per window and "
        "scope (the API's sample=random mode) with a readable transcript, for QA review.",
        (CONVERSATIONS,),
        table="qa_samples",
    )

    def compute(context: AssetExecutionContext, scope: Scope, window: Window) -> dict[str, Any]:
        resources = context.resources
        return draw_sample(
            resources.polyai, resources.warehouse, resources.lake, scope, window, size
        )

    return window_asset(spec, partitions_def, windows_per_run, {"polyai", "lake"}, compute)


def transcript(conversation: dict[str, Any]) -> str:
    lines = []
    for turn in conversation.get("turns") or []:
        if turn.get("user_input"):
            lines.append(f"user: {turn['user_input']}")
        if turn.get("agent_response"):
            lines.append(f"agent: {turn['agent_response']}")
    return "\n".join(lines)


def draw_sample(
    client: PolyAIClient,
    warehouse: Warehouse,
    lake: ParquetLake,
    scope: Scope,
    window: Window,
    size: int,
) -> dict[str, Any]:
    """Draw one window's sample, replace it in the warehouse and the lake; its metadata."""
    query = ConversationQuery(
        start_time=window.start,
        end_time=window.end,
        environment=scope.environment,
        channels=(scope.channel,),
        limit=size,
        sample="random",
    )
    drawn: list[Any] = []
    for page in client.iter_pages(query):
        drawn.extend(page.conversations)
        if len(drawn) >= size:  # a server that pages sample mode: its first `size` are enough
            break
    drawn = drawn[:size]
    now = datetime.now(UTC)
    # What cannot be a row (no id, no started_at, another scope) is left out, and a
    # conversation drawn twice is kept once (its later copy), as the sync does.
    batch = normalize_page(drawn, load_id="qa_sample", loaded_at=now, scope=scope)
    kept = batch.conversations
    whole = {c["id"]: c for c in drawn if isinstance(c, dict) and isinstance(c.get("id"), str)}
    conversations = [whole[i] for i in kept.column("id").to_pylist()]
    rows = pd.DataFrame(
        {
            "environment": scope.environment,
            "channel": scope.channel,
            "window_start": window.start,
            "conversation_date": window.start.date(),
            "conversation_id": kept.column("id").to_pylist(),
            "started_at": kept.column("started_at").to_pandas(),
            "num_turns": pd.array(kept.column("num_turns").to_pylist(), dtype="Int64"),
            "handoff": kept.column("handoff").to_pylist(),
            "transcript": [transcript(c) for c in conversations],
            "raw": [to_json(c) for c in conversations],
            "sampled_at": now,
        },
        columns=[c.name for c in schema.qa_samples.columns],
    )
    warehouse.replace_window_rows("qa_samples", scope, window, rows)
    path = lake.write_csv("qa_samples", scope, window, rows.drop(columns=["raw"]))
    return {
        "dagster/row_count": len(rows),
        "csv": str(path),
        "sample_size": size,
        "records_left_out": len(drawn) - len(rows),
    }
