"""The simulator over real HTTP: auth, validation and cursor pagination."""

from datetime import UTC, datetime

import httpx
import pytest

from core.windows import daily_window
from simulator import SimulatorConfig, SimulatorServer
from tests.conftest import SYNC_DAY

WINDOW = daily_window(SYNC_DAY)


def get(server: SimulatorServer, key: str | None = "test-key-9f3c", **params: object):
    config = server.config
    headers = {"x-api-key": key} if key is not None else {}
    query = {"start_time": WINDOW.start.isoformat(), "end_time": WINDOW.end.isoformat()}
    query.update(params)
    return httpx.get(
        f"{server.base_url}/v3/{config.account_id}/{config.project_id}/conversations",
        params=query,
        headers=headers,
    )


def test_requires_the_api_key(simulator: SimulatorServer) -> None:
    assert get(simulator, key=None).status_code == 401
    assert get(simulator, key="wrong").status_code == 403
    assert get(simulator).status_code == 200


def test_unknown_project_is_404(simulator: SimulatorServer) -> None:
    response = httpx.get(
        f"{simulator.base_url}/v3/acct-test/other/conversations",
        headers={"x-api-key": "test-key-9f3c"},
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "limit must be between 1 and 1000"),
        ({"limit": 1001}, "limit must be between 1 and 1000"),
        ({"limit": "ten"}, "not an integer"),
        ({"client_env": "prod"}, "client_env"),
        ({"cursor": "%%%not-base64"}, "malformed cursor"),
        ({"start_time": "2026-11-21T00:00:00Z"}, "before end_time"),
        ({"end_time": "2026-11-21T00:00:00"}, "no time zone"),
    ],
)
def test_bad_parameters_are_400_with_a_message(
    simulator: SimulatorServer, params: dict, message: str
) -> None:
    response = get(simulator, **params)
    assert response.status_code == 400
    assert message in response.json()["detail"]


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


def test_channel_filter_is_repeatable(simulator: SimulatorServer) -> None:
    voice = get(simulator, channel="voice").json()["conversations"]
    both = get(simulator, channel=["voice", "chat"]).json()["conversations"]
    assert {c["channel"] for c in voice} == {"voice"}
    assert {c["channel"] for c in both} == {"voice", "chat"}


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
