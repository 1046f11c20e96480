"""Requests in flight through the real command: ``polyai-sync sync`` against a server that
answers 30% of requests 429 and counts how many it serves at once."""

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance

from assets.keys import CONVERSATIONS
from core.names import WINDOW_LANDED
from core.windows import daily_window
from tests.conftest import SYNC_DAY, Serve
from tests.pipelines.cli_runs import run_cli, source_env

pytestmark = pytest.mark.e2e

DAYS = [SYNC_DAY - timedelta(days=n) for n in range(6)]
SCOPES = (("live", "voice"), ("live", "chat"))


def test_a_429_storm_through_the_command_lands_every_window_with_the_limit_in_its_metadata(
    serve: Serve, tmp_path: Path
) -> None:
    server = serve(faults={"latency_ms": 100, "rate_429": 0.3, "seed": 3})
    env = source_env(server, tmp_path)
    env.update(
        POLYAI_MAX_IN_FLIGHT="8",
        POLYAI_MAX_ATTEMPTS="12",  # 0.3^12: no window runs out of tries by chance
        POLYAI_PAGE_SIZE="1000",  # one page a window
        POLYAI_QA_SAMPLE_SIZE="0",
    )
    done = run_cli("sync", "--start", str(DAYS[-1]), "--end", str(DAYS[0]), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{len(DAYS) * 2} of {len(DAYS) * 2} window(s) synced, 0 failed" in done.stdout
    assert "in flight (limit " in done.stdout  # the progress line shows it
    assert env["POLYAI_API_KEY"] not in done.stdout + done.stderr

    # Every window exactly as served, despite the storm.
    truth = {
        (day.isoformat(), f"{environment}.{channel}"): sum(
            1
            for _ in server.dataset.conversations_in(
                environment, [channel], daily_window(day).start, daily_window(day).end
            )
        )
        for day in DAYS
        for environment, channel in SCOPES
    }
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        stored = con.execute(
            "SELECT CAST(conversation_date AS VARCHAR), environment || '.' || channel, "
            "count(*), count(DISTINCT id) FROM polyai.conversations GROUP BY ALL"
        ).fetchall()
    assert {(day, scope): n for day, scope, n, _ in stored} == {k: v for k, v in truth.items() if v}
    assert all(n == distinct for _, _, n, distinct in stored)

    # The server saw no more than 8 at once, and nothing beyond each request's tries.
    assert server.peak_in_flight <= 8
    throttled = server.faults.injected.get("429", 0)
    assert throttled > 0, "the storm never hit"
    assert server.requests == len(truth) + throttled  # every 429 retried once, no more

    # Each window's observation in the run carries the limit: it fell, and climbed back.
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        records = instance.fetch_observations(CONVERSATIONS, limit=100).records
    landed = [
        {k: v.value for k, v in r.asset_observation.metadata.items()}
        for r in records
        if WINDOW_LANDED in r.asset_observation.metadata
    ]
    assert len(landed) == len(truth)
    assert all(m["api_in_flight_max"] == 8 for m in landed)
    assert all(1 <= m["api_in_flight_peak"] <= 8 for m in landed)
    assert max(m["api_throttle_cuts"] for m in landed) >= 1
    assert min(m["api_in_flight_lowest_limit"] for m in landed) < 8
    climbed = [m for m in landed if m["api_in_flight_limit"] > m["api_in_flight_lowest_limit"]]
    assert climbed, [(m["api_in_flight_limit"], m["api_in_flight_lowest_limit"]) for m in landed]
