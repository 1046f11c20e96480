"""A window synced from a server this project did not shape: the canned page written from
PolyAI's published schemas (labels, float latency in seconds, camelCase ``metadata``,
``barge_in``, a list metric, optional fields left out, a conversation with ``turns: []``),
served over loopback HTTP and loaded into both engines by the real window sync."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from core.windows import Scope, daily_window
from resources.dbt import rebuild_kpis
from resources.polyai_api import PolyAIClient
from resources.warehouse import Warehouse
from resources.warehouse.checks import run_checks
from sync.window import sync_window
from tests.canned_server import (
    CALL_WITH_TURNS_ID,
    CALL_WITHOUT_TURNS_ID,
    CHAT_ID,
    PUBLISHED_ACCOUNT_ID,
    PUBLISHED_PROJECT_ID,
    WEBCHAT_ID,
    CannedServer,
    Received,
    Reply,
    json_reply,
    published_page,
)
from tests.conftest import SYNC_DAY

WINDOW = daily_window(SYNC_DAY)
KEY = "canned-key-5d1e"


def filtered_by_channel(request: Received) -> Reply:
    """The published page with only the conversations whose label the filter names, as an
    API that filters on labels would answer (a name it does not know matches nothing)."""
    asked = parse_qs(urlsplit(request.path).query).get("channel", [])
    page = published_page()
    page["conversations"] = [c for c in page["conversations"] if c["channel"] in asked]
    return json_reply(200, page)


def client_of(canned: CannedServer) -> PolyAIClient:
    return PolyAIClient(
        base_url=canned.base_url,
        api_key=KEY,
        account_id=PUBLISHED_ACCOUNT_ID,
        project_id=PUBLISHED_PROJECT_ID,
        backoff_base_seconds=0.001,
    )


@pytest.mark.parametrize("channel", ["voice", "chat"])
def test_the_published_page_loads_by_label_with_seconds_metadata_and_hidden_turns(
    warehouse: Warehouse, channel: str
) -> None:
    with CannedServer(filtered_by_channel) as canned:
        result = sync_window(client_of(canned), warehouse, Scope("live", channel), WINDOW)
        (request,) = canned.requests
    query = parse_qs(urlsplit(request.path).query)
    assert query["include_turn_metadata"] == ["true"] and query["include_latency"] == ["true"]
    conversations = warehouse.read_table("conversations").set_index("id")
    assert result.quarantined == 0
    if channel == "chat":
        assert query["channel"] == ["chat", "WEBCHAT", "CHAT"]
        assert sorted(conversations.index) == sorted([WEBCHAT_ID, CHAT_ID])
        assert set(conversations["channel"]) == {"chat"}
        assert conversations.loc[CHAT_ID, "channel_label"] == "CHAT"
        # Only the required fields were sent: every other column is null.
        assert conversations.loc[WEBCHAT_ID, ["from_number", "variant_id"]].isna().all()
        return
    assert query["channel"] == ["voice", "VOICE-SIP"]
    assert sorted(conversations.index) == sorted([CALL_WITH_TURNS_ID, CALL_WITHOUT_TURNS_ID])
    assert set(conversations["channel_label"]) == {"VOICE-SIP"}
    call = conversations.loc[CALL_WITH_TURNS_ID]
    assert json.loads(call["metrics"])["CALL_TURN"] == [
        "2026-11-20T09:00:05.12677Z",
        "2026-11-20T09:00:17.90602Z",
    ]
    turns = warehouse.read_table("turns").sort_values("turn_index")
    assert turns["latency_s"].tolist() == [0.742, 1.318]  # seconds, as served
    assert turns["barge_in"].tolist().count(True) == 1
    (genai,) = warehouse.read_table("turn_genai").to_dict("records")
    assert (genai["model"], genai["input_tokens"], genai["output_tokens"]) == (
        "gpt-4o-mini",
        812,
        41,
    )
    assert genai["cited_topic"] == "opening_hours"
    assert list(genai["knowledge_topics"]) == ["opening_hours"]
    assert json.loads(genai["function_calls"]) == [{"name": "lookup_booking"}]
    assert conversations.loc[CALL_WITHOUT_TURNS_ID, "num_turns"] == 3
    outcomes = {o.name: o for o in run_checks(warehouse, Scope("live", "voice"), WINDOW,
                                              result.load_id, 0.01)}  # fmt: skip
    assert outcomes["transcripts_visible"].violations == 1
    assert {name for name, o in outcomes.items() if not o.passed} == {"transcripts_visible"}
    rebuild_kpis(warehouse, [(Scope("live", "voice"), WINDOW)])
    latency = warehouse.read_table("latency_kpis").set_index("stage")
    assert latency.loc["overall", "p50_ms"] == pytest.approx(1030.0)  # of 742 and 1318 ms


def test_labels_the_filter_did_not_ask_for_are_quarantined_naming_the_mapping(
    warehouse: Warehouse,
) -> None:
    with CannedServer() as canned:
        canned.always(json_reply(200, published_page()))  # a server that ignores the filter
        result = sync_window(
            client_of(canned), warehouse, Scope("live", "voice"), WINDOW,
            max_quarantined_fraction=1.0,
        )  # fmt: skip
    assert result.quarantined == 2
    reasons = warehouse.read_table("quarantine")["reason"].tolist()
    assert all("POLYAI_CHANNEL_MAP maps 'voice' to voice, VOICE-SIP" in r for r in reasons)
