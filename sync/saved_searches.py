"""Saved searches, run over one window: each configured transcript or semantic query sent to
the API, its matches (id, rank, the first turn containing the text) written to
``saved_search_matches``. Plain Python (the Dagster asset is :mod:`assets.saved_searches`)."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core import schema
from core.config import SavedSearch
from core.lazy import lazy_module
from core.query import ConversationQuery
from core.windows import Scope, Window
from resources.polyai_api import PolyAIClient
from resources.warehouse import Warehouse
from resources.warehouse.analytics import replace_window_rows

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")


def matched_turn(conversation: dict[str, Any], text: str) -> tuple[int | None, str | None]:
    """The first turn whose user input or agent response contains ``text`` (any case)."""
    needle = text.casefold()
    for index, turn in enumerate(conversation.get("turns") or []):
        for field in ("user_input", "agent_response"):
            said = turn.get(field) or ""
            if needle in said.casefold():
                return index, said
    return None, None


def run_saved_searches(
    client: PolyAIClient,
    warehouse: Warehouse,
    searches: Sequence[SavedSearch],
    scope: Scope,
    window: Window,
) -> dict[str, Any]:
    """Run every saved search over one window; replace the window's matches; its metadata."""
    records = []
    now = datetime.now(UTC)
    for search in searches:
        query = ConversationQuery(
            start_time=window.start,
            end_time=window.end,
            environment=scope.environment,
            channels=client.channels.filter_values(scope.channel),
            query_type=search.query_type,  # type: ignore[arg-type]
            query=search.query,
        )
        found = [c for page in client.iter_pages(query) for c in page.conversations]
        for rank, conversation in enumerate(found, start=1):
            index, text = matched_turn(conversation, search.query)
            records.append(
                {
                    "environment": scope.environment,
                    "channel": scope.channel,
                    "window_start": window.start,
                    "conversation_date": window.start.date(),
                    "search": search.name,
                    "conversation_id": conversation["id"],
                    "query_type": search.query_type,
                    "query": search.query,
                    "rank": rank,
                    "matched_turn_index": index,
                    "matched_text": text,
                    "searched_at": now,
                }
            )
    columns = [c.name for c in schema.saved_search_matches.columns]
    rows = pd.DataFrame.from_records(records, columns=columns)
    rows["matched_turn_index"] = rows["matched_turn_index"].astype("Int64")
    replace_window_rows(warehouse, "saved_search_matches", scope, window, rows)
    counts = rows.groupby("search").size().to_dict() if len(rows) else {}
    return {
        "dagster/row_count": len(rows),
        **{f"matches_{s.name}": int(counts.get(s.name, 0)) for s in searches},
    }
