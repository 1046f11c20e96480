"""The simulator over real HTTP: auth, validation, the error envelope, the channel filter's
spellings, the flags' keys, the project without transcripts and cursor pagination."""

import re
from datetime import UTC, datetime

import httpx
import pytest

from core import api_contract as api
from core.windows import daily_window
from simulator import SimulatorConfig, SimulatorServer
from tests.conftest import SYNC_DAY, Serve

WINDOW = daily_window(SYNC_DAY)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def get(
    server: SimulatorServer,
    key: str | None = "test-key-9f3c",
    project: str | None = None,
    **params: object,
) -> httpx.Response:
    config = server.config
    headers = {api.API_KEY_HEADER: key} if key is not None else {}
    query = {api.P_START_TIME: WINDOW.start.isoformat(), api.P_END_TIME: WINDOW.end.isoformat()}
    query.update(params)
    path = api.endpoint_path(config.account_id, project or config.project_id)
    return httpx.get(f"{server.base_url}{path}", params=query, headers=headers)


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """The message of an error response, once its envelope is checked: PolyAI's keys, the
    code, and an ``error_id`` that is the correlation header."""
    assert response.status_code == status
    body = response.json()
    assert set(body) == {
        api.E_SUCCESS,
        api.E_ERROR,
        api.E_ERROR_ID,
        api.E_ERROR_CODE,
        api.E_ERROR_MESSAGE,
        api.E_DATA,
    }
    assert body[api.E_SUCCESS] is False and body[api.E_DATA] is None
    assert body[api.E_ERROR_CODE] == code
    assert UUID.match(body[api.E_ERROR_ID])
    assert response.headers[api.CORRELATION_ID_HEADER] == body[api.E_ERROR_ID]
    assert body[api.E_ERROR] == body[api.E_ERROR_MESSAGE] != ""
    return body[api.E_ERROR_MESSAGE]


def test_requires_the_api_key(simulator: SimulatorServer) -> None:
    assert "missing x-api-key" in error_of(get(simulator, key=None), 401, "AUTH_USER_UNAUTHORISED")
    assert "not valid" in error_of(get(simulator, key="wrong"), 403, "USER_ACCESS_FORBIDDEN")
    assert get(simulator).status_code == 200


def test_unknown_project_is_404(simulator: SimulatorServer) -> None:
    response = get(simulator, project="other")
    assert error_of(response, 404, "PROJECT_NOT_FOUND") == "unknown account or project"
    elsewhere = httpx.get(f"{simulator.base_url}/v2/acct-test/proj-test/conversations")
    assert "no such endpoint" in error_of(elsewhere, 404, "NOT_FOUND")


def test_each_error_has_its_own_id_and_a_success_has_a_correlation_id(
    simulator: SimulatorServer,
) -> None:
    ids = {get(simulator, key=None).json()[api.E_ERROR_ID] for _ in range(3)}
    assert len(ids) == 3
    assert UUID.match(get(simulator).headers[api.CORRELATION_ID_HEADER])


def test_429_and_5xx_carry_the_envelope(serve: Serve) -> None:
    limited = serve(faults={"rate_429": 1.0, "retry_after_seconds": 7})
    response = get(limited)
    assert error_of(response, 429, "RATE_LIMIT_EXCEEDED") == "rate limit exceeded"
    assert response.headers["Retry-After"] == "7"
    failing = serve(faults={"rate_5xx": 1.0, "seed": 5})
    codes = {
        500: "INTERNAL_SERVER_ERROR",
        502: "BAD_GATEWAY",
        503: "SERVICE_UNAVAILABLE",
        504: "GATEWAY_TIMEOUT",
    }
    seen = set()
    for _ in range(10):
        response = get(failing)
        assert "simulated" in error_of(response, response.status_code, codes[response.status_code])
        seen.add(response.status_code)
    assert len(seen) > 1


def test_a_rejected_cursor_carries_the_envelope(serve: Serve) -> None:
    server = serve(faults={"reject_cursor_rate": 1.0})
    cursor = get(server, limit=5).json()[api.R_CURSOR]
    response = get(server, limit=5, cursor=cursor)
    assert "expired" in error_of(response, 400, "CONVERSATIONS_VALIDATION_FAILED")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "limit must be between 1 and 1000"),
        ({"limit": 1001}, "limit must be between 1 and 1000"),
        ({"limit": "ten"}, "not an integer"),
        ({"client_env": "prod"}, "client_env"),
        ({"start_time": "2026-11-21T00:00:00Z"}, "before end_time"),
        ({"end_time": "2026-11-21T00:00:00"}, "no time zone"),
        ({"include_turn_metadata": "yes"}, "include_turn_metadata must be true or false"),
    ],
)
def test_bad_parameters_are_400_with_a_message(
    simulator: SimulatorServer, params: dict, message: str
) -> None:
    response = get(simulator, **params)
    assert message in error_of(response, 400, "GET_CONVERSATIONS_FILTER_PARSE_ERROR")


@pytest.mark.parametrize("cursor", ["%%%not-base64", "eA"])  # "eA": base64 of "x"
def test_a_malformed_cursor_is_400_with_its_own_code(
    simulator: SimulatorServer, cursor: str
) -> None:
    response = get(simulator, cursor=cursor)
    assert "malformed cursor" in error_of(response, 400, "CONVERSATIONS_VALIDATION_FAILED")


def test_cursor_pages_cover_the_window_once_in_order(simulator: SimulatorServer) -> None:
    seen: list[tuple[str, str]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 37, "channel": ["voice", "chat"]}
        if cursor:
            params["cursor"] = cursor
        body = get(simulator, **params).json()
        pages += 1
        seen += [(c["started_at"], c["id"]) for c in body["conversations"]]
        cursor = body["cursor"]
        if cursor is None:
            break
        # next_offset belongs to offset pagination: only a request without a cursor gets it.
        assert body.get("next_offset") == (len(seen) if pages == 1 else None)
    expected = list(
        simulator.dataset.conversations_in("live", ["voice", "chat"], WINDOW.start, WINDOW.end)
    )
    assert seen == [(c["started_at"], c["id"]) for c in expected]
    assert len(set(seen)) == len(seen) > 37 * 3
    assert pages == -(-len(seen) // 37)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200
    return [c["id"] for c in response.json()[api.R_CONVERSATIONS]]


@pytest.mark.parametrize(
    ("values", "labels"),
    [
        (["voice"], {"VOICE-SIP"}),
        (["VOICE-SIP"], {"VOICE-SIP"}),
        (["chat"], {"WEBCHAT"}),
        (["WEBCHAT"], {"WEBCHAT"}),
        (["CHAT"], {"WEBCHAT"}),  # the old label still selects webchat
        (["chat", "WEBCHAT", "CHAT"], {"WEBCHAT"}),  # duplicates are fine
        (["voice", "chat"], {"VOICE-SIP", "WEBCHAT"}),
        (["VOICE-SIP", "WEBCHAT"], {"VOICE-SIP", "WEBCHAT"}),
        (["voice", "WEBCHAT"], {"VOICE-SIP", "WEBCHAT"}),
    ],
)
def test_the_channel_filter_takes_names_and_labels_and_repeats(
    simulator: SimulatorServer, values: list[str], labels: set[str]
) -> None:
    page = get(simulator, channel=values).json()[api.R_CONVERSATIONS]
    assert {c[api.P_CHANNEL] for c in page} == labels
    spelled = {"VOICE-SIP": "voice", "WEBCHAT": "chat"}
    channels = sorted(spelled[label] for label in labels)
    expected = simulator.dataset.conversations_in("live", channels, WINDOW.start, WINDOW.end)
    assert [c["id"] for c in page] == [c["id"] for c in expected]


@pytest.mark.parametrize("value", ["sms", "Voice", "webchat", "voice-sip", ""])
def test_an_unknown_channel_is_400(simulator: SimulatorServer, value: str) -> None:
    response = get(simulator, channel=["voice", value])
    message = error_of(response, 400, "GET_CONVERSATIONS_FILTER_PARSE_ERROR")
    assert f"channel {value!r} is not one of" in message


def test_the_chat_label_before_the_rename_is_chat(simulator: SimulatorServer) -> None:
    window = daily_window(datetime(2026, 3, 26, tzinfo=UTC).date())
    params = {api.P_START_TIME: window.start.isoformat(), api.P_END_TIME: window.end.isoformat()}
    page = get(simulator, channel="WEBCHAT", **params).json()[api.R_CONVERSATIONS]
    assert page and {c[api.P_CHANNEL] for c in page} == {"CHAT"}


def test_data_is_deterministic_and_seed_dependent(sim_config: SimulatorConfig) -> None:
    def ids(config: SimulatorConfig) -> list[str]:
        with SimulatorServer(config) as server:
            return [c["id"] for c in get(server, key=config.api_key).json()["conversations"]]

    assert ids(sim_config) == ids(sim_config)
    other = SimulatorConfig(**{**sim_config.__dict__, "seed": sim_config.seed + 1})
    assert ids(other) != ids(sim_config)


def test_nothing_after_now_is_served_and_recent_calls_are_in_progress() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    config = SimulatorConfig(api_key="k", now=now, conversations_per_day=2000)
    with SimulatorServer(config) as server:
        conversations = get(server, key="k", channel="voice").json()["conversations"]
    starts = [datetime.fromisoformat(c["started_at"]) for c in conversations]
    assert starts and max(starts) <= now
    assert any(c["in_progress"] for c in conversations)
    for c in conversations:
        assert c["num_turns"] == len(c["turns"])
        if c["in_progress"]:
            assert (now - datetime.fromisoformat(c["started_at"])).total_seconds() < 120


def turns_of(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200
    return [t for c in response.json()[api.R_CONVERSATIONS] for t in c["turns"]]


def test_include_latency_adds_each_turns_latency_in_seconds(simulator: SimulatorServer) -> None:
    plain = get(simulator, channel="voice")
    timed = get(simulator, channel="voice", **{api.P_INCLUDE_LATENCY: "true"})
    assert all(api.T_LATENCY not in t for t in turns_of(plain))
    latencies = [t[api.T_LATENCY] for t in turns_of(timed)]
    assert latencies and all(isinstance(x, float) and 0.0 < x < 3.0 for x in latencies)
    assert all(api.R_LATENCY_BREAKDOWN not in c for c in timed.json()[api.R_CONVERSATIONS])
    assert all(type(t[api.T_BARGE_IN]) is bool for t in turns_of(plain))


def test_include_turn_metadata_adds_each_turns_metadata(simulator: SimulatorServer) -> None:
    plain = get(simulator, channel="chat")
    rich = get(simulator, channel="chat", **{api.P_INCLUDE_TURN_METADATA: "true"})
    assert all(api.T_METADATA not in t for t in turns_of(plain))
    metadata = [t[api.T_METADATA] for t in turns_of(rich)]
    assert any("llmRequests" in m for m in metadata) and {} in metadata
    assert all(key[0].islower() and "_" not in key for m in metadata for key in m)
    assert "genai_metadata" not in rich.text  # the old assumed name is gone
    old = get(simulator, channel="chat", include_genai_metadata="true")  # ignored, as unknown
    assert old.json() == plain.json()


def test_the_latency_breakdown_is_served_only_when_configured(serve: Serve) -> None:
    server = serve(latency_breakdown=True)
    timed = get(server, channel="voice", **{api.P_INCLUDE_LATENCY: "true"})
    conversations = timed.json()[api.R_CONVERSATIONS]
    assert conversations
    for c in conversations:
        entries = c[api.R_LATENCY_BREAKDOWN]["turns"]
        assert [e["total_ms"] / 1000 for e in entries] == [t[api.T_LATENCY] for t in c["turns"]]
    plain = get(server, channel="voice").json()[api.R_CONVERSATIONS]
    assert all(api.R_LATENCY_BREAKDOWN not in c for c in plain)


def test_the_project_without_transcripts_serves_their_count_only(
    simulator: SimulatorServer,
) -> None:
    hidden = simulator.config.transcripts_hidden_project
    assert hidden == f"{simulator.config.project_id}-no-transcripts"
    flags = {api.P_INCLUDE_LATENCY: "true", api.P_INCLUDE_TURN_METADATA: "true"}
    shown = get(simulator, **flags).json()[api.R_CONVERSATIONS]
    blind = get(simulator, project=hidden, **flags).json()[api.R_CONVERSATIONS]
    assert [c["id"] for c in blind] == [c["id"] for c in shown]
    assert [c["num_turns"] for c in blind] == [len(c["turns"]) for c in shown]
    assert all(c["turns"] == [] and c["project_id"] == hidden for c in blind)
    assert sum(c["num_turns"] for c in blind) > len(blind)
    # Each project's bytes are cached apart: the first project still has its turns.
    assert get(simulator, **flags).json()[api.R_CONVERSATIONS] == shown
    for mode in ("transcript", "semantic"):
        search = {api.P_QUERY_TYPE: mode, api.P_QUERY: "reservation"}
        assert ids(get(simulator, **search)) != []
        assert ids(get(simulator, project=hidden, **search)) == []


def test_the_project_without_transcripts_can_be_renamed_or_removed(serve: Serve) -> None:
    renamed = serve(transcripts_hidden_project_id="proj-dark")
    assert ids(get(renamed, project="proj-dark"))
    error_of(get(renamed, project="proj-test-no-transcripts"), 404, "PROJECT_NOT_FOUND")
    removed = serve(transcripts_hidden_project_id="")
    error_of(get(removed, project="proj-test-no-transcripts"), 404, "PROJECT_NOT_FOUND")
