"""Large values (issue 15, Size), through the real CLI: a 33 MB turn and pages of conversations
of 400 KB each load on both engines, exactly as received, lake included (DuckDB used to fail
at its 128 MB cap and leave the window ``staged`` for good); more than
``WAREHOUSE_MAX_MEMORY_MB`` allows is refused with an error naming the setting, and a re-run
with room goes on from what was committed: a refused publish is not fetched again."""

import json
from datetime import date

import pyarrow.parquet as pq
import pytest

from core import schema
from core.windows import Scope, daily_window
from resources.warehouse import WarehouseSizeError, WindowKey, read_state
from resources.warehouse.duckdb_engine import DuckDBWarehouse
from sync.window import sync_window
from tests.hostile.harness import Deployment
from tests.hostile.server import ACCOUNT, PROJECT, conversation

pytestmark = pytest.mark.e2e

DAY = "2026-01-05"
TURN_TEXT = "".join(chr(0x41 + n % 26) for n in range(33 * 2**20))  # 33 MiB, one turn's text


def _big_turn(ident: str, channel: str) -> dict:
    record = conversation(ident, f"{DAY}T01:00:00Z", channel=channel)
    record["turns"][0]["user_input"] = TURN_TEXT
    return record


def _heavy(count: int, kib: int, channel: str) -> list[dict]:
    """``count`` conversations, each carrying a ``kib`` KiB metric (in ``metrics`` and
    ``raw``: twice that in large values), each blob its own."""
    return [
        conversation(
            f"{channel}{n}",
            f"{DAY}T{n % 24:02d}:{n % 60:02d}:00Z",
            channel=channel,
            metrics={"BLOB": f"{n:06d}" + "z" * (kib * 1024)},
        )
        for n in range(count)
    ]


def test_large_values_load_exactly_into_the_warehouse_and_the_lake(
    deployment: Deployment,
) -> None:
    api = deployment.api
    small = conversation("small", f"{DAY}T02:00:00Z")
    api.put("live", "voice", DAY, [_big_turn("big", "voice"), small])
    heavy = _heavy(300, 200, "chat")  # one page of 300 x 400 KB: about 120 MB of large values
    api.put("live", "chat", DAY, heavy)

    done = deployment.sync(DAY)

    assert done.returncode == 0, done.stdout + done.stderr
    states = {row["channel"]: row for row in deployment.rows("sync_state")}
    assert {c: s["status"] for c, s in states.items()} == {"voice": "complete", "chat": "complete"}
    assert states["voice"]["large_value_bytes"] >= 2 * len(TURN_TEXT)  # turns.raw, user_input
    turn = deployment.rows("turns", "conversation_id = 'big' AND turn_index = 0")[0]
    assert turn["user_input"] == TURN_TEXT
    assert json.loads(turn["raw"])["user_input"] == TURN_TEXT
    loaded = {r["id"]: r for r in deployment.rows("conversations", "channel = 'chat'")}
    assert sorted(loaded) == sorted(r["id"] for r in heavy)
    for record in heavy[::37]:
        assert json.loads(loaded[record["id"]]["metrics"]) == record["metrics"]
        assert json.loads(loaded[record["id"]]["raw"])["metrics"] == record["metrics"]
    assert deployment.lake_ids() == sorted(["big", "small", *loaded])
    (turn_file,) = [
        path
        for path in (deployment.lake / "turns").rglob("*.parquet")
        if "channel=voice" in str(path)
    ]
    lake_turns = pq.read_table(turn_file, columns=["conversation_id", "user_input"]).to_pylist()
    assert {"conversation_id": "big", "user_input": TURN_TEXT} in lake_turns


def test_a_publish_over_the_memory_ceiling_is_refused_by_name_and_a_rerun_publishes_it(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    # 4 pages of 50 x 200 KB: about 10 MB of large values a page, 39 MB the window. Each page
    # fits under a 256 MB ceiling (128 + 4 x 10 MB); the window's publish does not (128 + 4 x 39).
    voice = _heavy(200, 100, "voice")
    api.put("live", "voice", DAY, voice)

    refused = deployment.sync(DAY, WAREHOUSE_MAX_MEMORY_MB="256", POLYAI_PAGE_SIZE="50")

    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output
    assert "1 of 2 window(s) synced, 1 failed" in output
    assert "publishing live.voice 2026-01-05: 39 MB of text values of 16 KiB or more" in output
    assert "more than WAREHOUSE_MAX_MEMORY_MB (256 MB)" in output
    assert "a re-run publishes the staged pages" in output
    assert "Traceback" not in output and "OutOfMemory" not in output
    assert "a re-run publishes the pages staged, without fetching them" in output
    (state,) = deployment.rows("sync_state", "channel = 'voice'")
    assert (state["status"], state["pages"]) == ("failed", 4)  # its pages kept
    assert "more than WAREHOUSE_MAX_MEMORY_MB" in state["error"]
    assert deployment.ids() == []
    fetched = len(api.requests)

    again = deployment.sync(DAY, POLYAI_PAGE_SIZE="50")

    assert again.returncode == 0, again.stdout + again.stderr
    assert len(api.requests) == fetched + 1  # live.chat's empty page; voice was not fetched
    assert deployment.ids() == sorted(r["id"] for r in voice)
    assert {r["status"] for r in deployment.rows("sync_state")} == {"complete"}


def test_a_page_over_the_memory_ceiling_is_staged_and_its_publish_refused(
    duckdb_deployment: Deployment,
) -> None:
    """DuckDB stages a page in files, outside its memory: only the publish needs the room,
    and a re-run with the room publishes without fetching the page again."""
    deployment, api = duckdb_deployment, duckdb_deployment.api
    api.put("live", "chat", DAY, [_big_turn("big", "chat")])  # needs 128 + 4 x 66 MB
    client = deployment.client()
    key = WindowKey(ACCOUNT, PROJECT, Scope("live", "chat"), daily_window(date(2026, 1, 5)))
    tight = DuckDBWarehouse(url=deployment.warehouse_url, max_memory_mb=256)

    with pytest.raises(WarehouseSizeError) as refused:  # (the window's own: alone, it raises)
        sync_window(client, tight, key.scope, key.window)

    assert str(refused.value).startswith("publishing live.chat 2026-01-05: 66 MB of text values")
    assert "Raise it, or use PostgreSQL" in str(refused.value)
    assert "a re-run publishes the staged pages" in str(refused.value)
    state = read_state(tight, key)
    assert state is not None and (state.status, state.pages) == ("failed", 1)
    assert state.cursor is None  # every page in: the next sync publishes them
    assert deployment.rows("turns") == []
    fetched = len(api.requests)

    roomy = DuckDBWarehouse(url=deployment.warehouse_url)
    landed = sync_window(client, roomy, key.scope, key.window)

    assert len(api.requests) == fetched  # published from the staged files
    assert landed.rows["turns"] == 2
    assert deployment.rows("turns", "turn_index = 0")[0]["user_input"] == TURN_TEXT


def test_duckdb_running_out_of_memory_is_a_size_error_naming_the_setting(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    api.put("live", "chat", DAY, [_big_turn("big", "chat")])
    client = deployment.client()
    scope, window = Scope("live", "chat"), daily_window(date(2026, 1, 5))
    sync_window(client, DuckDBWarehouse(url=deployment.warehouse_url), scope, window)
    # Below the smallest WAREHOUSE_MAX_MEMORY_MB (256): room for nothing but DuckDB's base cap.
    starved = DuckDBWarehouse(url=deployment.warehouse_url, max_memory_mb=128)

    with pytest.raises(WarehouseSizeError) as refused:
        starved.window_rows(schema.turns, scope, window)

    message = str(refused.value)
    assert message.startswith("DuckDB ran out of memory (Out of Memory Error: ")
    assert message.endswith(
        "Raise WAREHOUSE_MAX_MEMORY_MB (now 128 MB) or use PostgreSQL; what was committed is kept."
    )
    assert "\n" not in message and "SET memory_limit" not in message
    rows = DuckDBWarehouse(url=deployment.warehouse_url).window_rows(schema.turns, scope, window)
    assert rows.column("user_input").to_pylist()[0] == TURN_TEXT
