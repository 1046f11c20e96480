"""Every query parameter of API.md, sent by the client and honoured by the simulator."""

from datetime import datetime, timedelta

import pytest

from core import api_contract as api
from core.channels import ChannelMap
from core.query import ConversationQuery, QueryError
from core.windows import daily_window
from simulator.data import variant_of
from tests.conftest import SYNC_DAY, Serve, client_for
from tests.contract.expected import fetch, truth

WINDOW = daily_window(SYNC_DAY)


def query(**fields: object) -> ConversationQuery:
    return ConversationQuery(start_time=WINDOW.start, end_time=WINDOW.end, **fields)


@pytest.mark.parametrize("environment", api.ENVIRONMENTS)
def test_environment_selects_that_environment_only(serve: Serve, environment: str) -> None:
    server = serve()
    got = fetch(client_for(server), query(environment=environment))
    assert got == truth(server, environment)
    assert {c["environment"] for c in got} == {environment}


@pytest.mark.parametrize(
    ("channels", "internal"),
    [
        (("voice",), ("voice",)),
        (("chat",), ("chat",)),
        (("voice", "chat"), ("voice", "chat")),
        (("VOICE-SIP",), ("voice",)),
        (("WEBCHAT", "CHAT"), ("chat",)),
        (("VOICE-SIP", "WEBCHAT"), ("voice", "chat")),
    ],
)
def test_channels_repeat_and_filter(serve: Serve, channels: tuple, internal: tuple) -> None:
    server = serve()
    got = fetch(client_for(server), query(channels=channels))
    labels = {api.CHANNEL_LABELS[channel][0] for channel in internal}  # after the rename
    assert {c["channel"] for c in got} == labels
    assert got == truth(server, channels=internal)
    assert all(path.count("channel=") == len(channels) for path in server.recent_paths)


@pytest.mark.parametrize("mode", api.CHANNEL_FILTERS)
@pytest.mark.parametrize("channel", ["voice", "chat"])
def test_every_filter_spelling_a_sync_sends_selects_its_channel(
    serve: Serve, mode: str, channel: str
) -> None:
    server = serve()
    channels = ChannelMap(filter_mode=mode)
    got = fetch(client_for(server), query(channels=channels.filter_values(channel)))
    assert got == truth(server, channels=(channel,)) != []
    assert all(channels.accepts(channel, c["channel"]) for c in got)


def test_time_range_is_half_open_and_exact(serve: Serve) -> None:
    server = serve()
    start = WINDOW.start + timedelta(hours=9, minutes=30)
    end = start + timedelta(hours=2)
    got = fetch(client_for(server), ConversationQuery(start_time=start, end_time=end))
    starts = [datetime.fromisoformat(c["started_at"]) for c in got]
    assert got and all(start <= s < end for s in starts)
    everything = truth(server)
    assert len(got) == sum(
        start <= datetime.fromisoformat(c["started_at"]) < end for c in everything
    )


@pytest.mark.parametrize("limit", [1, 7, 1000])
def test_limit_is_the_page_size(serve: Serve, limit: int) -> None:
    server = serve(conversations_per_day=40)
    pages = list(client_for(server).iter_pages(query(limit=limit)))
    total = len(truth(server))
    assert [len(p.conversations) for p in pages[:-1]] == [limit] * (len(pages) - 1)
    assert sum(len(p.conversations) for p in pages) == total
    assert len(pages) == max(1, -(-total // limit))


@pytest.mark.parametrize(("field", "value"), [("variant_id", "var-spring-promo"),
                                              ("variant_name", "Spring Promo")])  # fmt: skip
def test_variant_filters_and_spaces_travel_as_percent_20(
    serve: Serve, field: str, value: str
) -> None:
    server = serve()
    got = fetch(client_for(server), query(**{field: value}))
    # A few conversations are served without variant_name: the filter still selects them.
    position = 0 if field == "variant_id" else 1
    expected = [
        c for c in truth(server) if variant_of(server.config.seed, c["id"])[position] == value
    ]
    if field == "variant_id":
        assert expected == [c for c in truth(server) if c[field] == value]
    else:
        assert any(field not in c for c in got)
        assert all(c[field] == value for c in got if field in c)
    assert got == expected and 0 < len(got) < len(truth(server))
    if field == "variant_name":
        assert all("variant_name=Spring%20Promo" in p for p in server.recent_paths)
    assert variant_of(server.config.seed, got[0]["id"])[0] == "var-spring-promo"


@pytest.mark.parametrize("in_progress", [True, False])
def test_in_progress_filter(serve: Serve, in_progress: bool) -> None:
    # The clock stands in the middle of a busy day: some calls are still going on.
    server = serve(now=WINDOW.start + timedelta(hours=11), conversations_per_day=3000)
    got = fetch(client_for(server), query(in_progress=in_progress))
    everyone = truth(server)
    assert {c["in_progress"] for c in got} == {in_progress}
    assert len(got) == sum(c["in_progress"] == in_progress for c in everyone) > 0


def test_in_progress_conversations_finish_later(serve: Serve) -> None:
    server = serve(now=WINDOW.start + timedelta(hours=11), conversations_per_day=3000)
    client = client_for(server)
    ongoing = fetch(client, query(in_progress=True))
    server.dataset.set_now(WINDOW.start + timedelta(hours=12))
    later = {c["id"]: c for c in fetch(client, query())}
    for before in ongoing:
        after = later[before["id"]]
        assert after["in_progress"] is False
        assert len(after["turns"]) > len(before["turns"])
        assert after["turns"][: len(before["turns"])] == before["turns"]


def test_include_latency_adds_each_turns_latency_in_seconds(serve: Serve) -> None:
    server = serve()
    plain = fetch(client_for(server), query(channels=("voice",)))
    with_latency = fetch(client_for(server), query(channels=("voice",), include_latency=True))
    assert with_latency == truth(server, channels=("voice",), latency=True)
    assert all(api.T_LATENCY not in t for c in plain for t in c["turns"])
    turns = [t for c in with_latency for t in c["turns"]]
    assert turns and all(isinstance(t[api.T_LATENCY], float) for t in turns)
    assert all(api.R_LATENCY_BREAKDOWN not in c for c in with_latency)  # not published


def test_the_assumed_breakdown_comes_with_include_latency_when_served(serve: Serve) -> None:
    server = serve(latency_breakdown=True)
    plain = fetch(client_for(server), query(channels=("voice",)))
    with_latency = fetch(client_for(server), query(channels=("voice",), include_latency=True))
    assert all(api.R_LATENCY_BREAKDOWN not in c for c in plain)
    for conversation in with_latency:
        breakdown = conversation[api.R_LATENCY_BREAKDOWN]
        assert [t["turn_index"] for t in breakdown["turns"]] == list(
            range(len(conversation["turns"]))
        )
        for entry, turn in zip(breakdown["turns"], conversation["turns"], strict=True):
            assert set(entry["stages"]) == set(api.LATENCY_STAGES)
            assert entry["total_ms"] == sum(entry["stages"].values())
            assert entry["total_ms"] / 1000 == turn[api.T_LATENCY]


def test_include_turn_metadata_adds_per_turn_metadata(serve: Serve) -> None:
    server = serve()
    plain = fetch(client_for(server), query())
    rich = fetch(client_for(server), query(include_turn_metadata=True))
    assert all(api.T_METADATA not in t for c in plain for t in c["turns"])
    assert f"{api.P_INCLUDE_TURN_METADATA}=true" in server.recent_paths[-1]
    assert rich == truth(server, metadata=True)
    metadata = [t[api.T_METADATA] for c in rich for t in c["turns"]]
    requests = [r for m in metadata for r in m.get("llmRequests", [])]
    assert requests and all(r["inputTokens"] > 0 for r in requests)
    assert any(m.get("functionEvents") for m in metadata)
    assert [c["id"] for c in rich] == [c["id"] for c in plain]


def test_a_project_without_transcripts_is_read_with_turn_counts_only(serve: Serve) -> None:
    server = serve()
    hidden = server.config.transcripts_hidden_project
    got = fetch(client_for(server, project_id=hidden), query())
    assert got == truth(server, project_id=hidden)
    shown = truth(server)
    assert [c["num_turns"] for c in got] == [len(c["turns"]) for c in shown]
    assert all(c["turns"] == [] for c in got) and any(c["num_turns"] for c in got)


def test_unknown_extra_parameters_are_sent_as_given(serve: Serve) -> None:
    server = serve()
    fetch(client_for(server), query(extra={"future_flag": "yes"}))
    assert all("future_flag=yes" in p for p in server.recent_paths)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"variant_id": "a", "variant_name": "b"}, "either variant_id or variant_name"),
        ({"query_type": "transcript"}, "needs a query text"),
        ({"query_type": "semantic", "query": "x", "sample": "random"}, "mutually exclusive"),
        ({"limit": 0}, "limit must be between 1 and 1000"),
        ({"limit": 1001}, "limit must be between 1 and 1000"),
        ({"environment": "prod"}, "environment 'prod'"),
        ({"turn_type": "user"}, "transcript search only"),
        ({"query": "hello"}, "only used with query_type"),
        ({"channels": "voice"}, "not one string"),
    ],
)
def test_invalid_queries_fail_before_any_request(fields: dict, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        query(**fields)


def test_naive_and_reversed_times_fail_before_any_request() -> None:
    with pytest.raises(QueryError, match="timezone-aware"):
        ConversationQuery(start_time=datetime(2026, 11, 20), end_time=WINDOW.end)
    with pytest.raises(QueryError, match="must be before"):
        ConversationQuery(start_time=WINDOW.end, end_time=WINDOW.start)
