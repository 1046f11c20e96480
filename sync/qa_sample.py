"""The QA sample's draw: one window's random sample of conversations per scope through the
API's ``sample=random`` mode, normalized like the sync's, written to ``qa_samples`` in the
warehouse and as one CSV per window in the lake. Plain Python (the Dagster asset is
:mod:`assets.qa_sample`)."""

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core import schema
from core.lazy import lazy_module
from core.normalize import normalize_page, to_json
from core.query import ConversationQuery
from core.windows import Scope, Window
from resources.lake import ParquetLake
from resources.polyai_api import PolyAIClient
from resources.warehouse import Warehouse
from resources.warehouse.analytics import replace_window_rows

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")


def transcript(conversation: dict[str, Any]) -> str:
    """The conversation's turns as ``user: …`` / ``agent: …`` lines."""
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
        channels=client.channels.filter_values(scope.channel),
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
    batch = normalize_page(
        drawn, load_id="qa_sample", loaded_at=now, scope=scope, channels=client.channels
    )
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
    replace_window_rows(warehouse, "qa_samples", scope, window, rows)
    path = lake.write_csv("qa_samples", scope, window, rows.drop(columns=["raw"]))
    return {
        "dagster/row_count": len(rows),
        "csv": path,
        "sample_size": size,
        "records_left_out": len(drawn) - len(rows),
    }
