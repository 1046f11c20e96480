"""Cases 1-6 of the hostile API (issue 15), on DuckDB and PostgreSQL, through the real CLI: what
a surprising server sends is never lost, never doubled, never silently wrong, and nothing
else in the warehouse, the KPI tables or the lake changes."""

import json

import pytest

from tests.hostile.harness import Deployment
from tests.hostile.server import conversation, json_reply

pytestmark = pytest.mark.e2e

D4, D5 = "2026-01-04", "2026-01-05"


def done_ok(done) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_record_served_outside_its_window_stays_until_its_own_window_drops_it(
    deployment: Deployment,
) -> None:
    api = deployment.api
    api.put("live", "voice", D4, [conversation("a1", f"{D4}T08:00:00Z")])
    x = conversation("x", f"{D4}T21:30:00Z")  # started on the 4th, served only for the 5th
    api.put("live", "voice", D5, [conversation("b1", f"{D5}T09:00:00Z"), x])
    first = deployment.sync(D4, D5, "--channel", "voice")
    done_ok(first)
    assert deployment.ids() == ["a1", "b1", "x"]
    # Kept, and reported: the window check says a conversation started outside it.
    assert "timestamps_inside_the_window" in first.stderr and "warning" in first.stderr
    before = deployment.state()

    again = deployment.sync(D4, None, "--channel", "voice")  # the 4th alone, X not in it
    done_ok(again)
    assert deployment.state() == before  # X kept; nothing else changed either

    api.put("live", "voice", D5, [conversation("b1", f"{D5}T09:00:00Z")])
    done_ok(deployment.sync(D5, None, "--channel", "voice"))  # its own window drops it
    assert deployment.ids() == ["a1", "b1"]
    deployment.assert_no_secret(first, again)


def test_an_id_served_for_two_scopes_and_days_is_held_once_and_reported(
    deployment: Deployment,
) -> None:
    api = deployment.api
    twin = conversation("twin", f"{D4}T10:00:00Z")
    api.put("live", "voice", D4, [twin, conversation("v1", f"{D4}T11:00:00Z")])
    done_ok(deployment.sync(D4, None, "--channel", "voice", POLYAI_DBT_MODELS="1"))
    before = deployment.state()

    chat_twin = {**twin, "channel": "chat"}  # the same id, as a chat, and again on the 5th
    api.put("live", "chat", D4, [chat_twin, conversation("c1", f"{D4}T12:00:00Z", channel="chat")])
    api.put("live", "voice", D5, [{**twin, "started_at": f"{D5}T10:00:00Z"}])
    done = deployment.sync(D4, D5, POLYAI_DBT_MODELS="1")  # the KPIs are compared
    done_ok(done)
    assert "already held by another window or scope" in done.stdout
    assert "no_conversation_held_by_another_window" in done.stderr

    rows = {r["id"]: r for r in deployment.rows("conversations")}
    assert sorted(rows) == ["c1", "twin", "v1"]
    assert (rows["twin"]["channel"], str(rows["twin"]["started_at"])[:10]) == ("voice", D4)
    # The voice window of the 4th is exactly as before (rows, KPIs, lake files).
    after = deployment.state()
    for path, lake_rows in before["lake"].items():
        assert after["lake"][path] == lake_rows
    kpis = {
        (k["channel"], str(k["window_start"])[:10]): k["conversations"]
        for k in deployment.rows("conversation_kpis")
    }
    assert kpis == {("voice", D4): 2, ("chat", D4): 1}  # the 5th holds none: no KPI row
    assert deployment.lake_ids() == ["c1", "twin", "v1"]  # once each

    # Each set-aside copy is in the quarantine, whole, naming the window that holds it.
    collisions = [q for q in deployment.rows("quarantine") if q["reason"].startswith("collision")]
    assert len(collisions) == 2
    for q in collisions:
        assert "live.voice 2026-01-04" in q["reason"]
        record = q["raw"] if isinstance(q["raw"], dict) else json.loads(q["raw"])
        assert record["id"] == "twin" and len(record["turns"]) == 2
    deployment.assert_no_secret(done)


def test_records_of_another_scope_are_quarantined_with_the_reason(
    deployment: Deployment,
) -> None:
    api = deployment.api
    good = [conversation(f"g{n}", f"{D4}T0{n}:00:00Z") for n in range(3)]
    strays = [
        conversation("sms1", f"{D4}T05:00:00Z", channel="sms"),
        conversation("up1", f"{D4}T06:00:00Z", channel="../../x"),
        conversation("sb1", f"{D4}T07:00:00Z", environment="sandbox"),
    ]
    api.put("live", "voice", D4, good + strays)
    done = deployment.sync(D4, None, "--channel", "voice", POLYAI_QUARANTINE_MAX_FRACTION="0.6")
    done_ok(done)
    assert "3 record(s) quarantined" in done.stdout
    assert deployment.ids() == ["g0", "g1", "g2"]
    reasons = {q["conversation_id"]: q["reason"] for q in deployment.rows("quarantine")}
    assert set(reasons) == {"sms1", "up1", "sb1"}
    assert all("live.voice" in r for r in reasons.values())
    assert "out of scope: environment 'sandbox'" in reasons["sb1"]
    for unknown in ("sms1", "up1"):  # a label no channel has: the setting that maps one
        assert "unknown channel label" in reasons[unknown]
        assert "POLYAI_CHANNEL_MAP" in reasons[unknown]
    assert not any(".." in str(p) for p in deployment.lake.rglob("*") if "x" in p.name)

    # With the default threshold, a window that is half strays is not published at all.
    api.put("live", "voice", D5, [good[0] | {"id": "g9", "started_at": f"{D5}T01:00:00Z"}, *strays])
    refused = deployment.sync(D5, None, "--channel", "voice")
    assert refused.returncode == 1 and "failed validation" in refused.stdout
    deployment.assert_no_secret(done, refused)


def test_integers_beyond_64_bits_are_kept_exactly_in_raw(deployment: Deployment) -> None:
    huge = 123456789012345678901234567890
    record = conversation(
        "big", f"{D4}T08:00:00Z", num_turns=2**63, metrics={"BIG": huge, "NEG": -(2**64)}
    )
    deployment.api.put("live", "voice", D4, [record])
    done = deployment.sync(D4, None, "--channel", "voice")
    # Loaded, num_turns null (an optional field may be null; its 2 turns are not held against
    # it), and the value that did not fit is reported.
    assert "1 of 1 window(s) synced" in done.stdout
    assert done.returncode == 0, done.stderr
    (row,) = deployment.rows("conversations")
    assert row["num_turns"] is None  # beyond the column's 64 bits: null, and reported
    raw = row["raw"] if isinstance(row["raw"], dict) else json.loads(row["raw"])
    assert raw["num_turns"] == 2**63 and raw["metrics"] == {"BIG": huge, "NEG": -(2**64)}
    metrics = row["metrics"] if isinstance(row["metrics"], dict) else json.loads(row["metrics"])
    assert metrics["BIG"] == huge
    deployment.assert_no_secret(done)


def test_duplicate_latency_stages_and_stray_turn_indexes_never_double_a_row(
    deployment: Deployment,
) -> None:
    record = conversation("lat", f"{D4}T08:00:00Z", turns=2)
    record["latency"] = {
        "turns": [
            {"turn_index": 0, "stages": {"asr": 855, "model": 100}},
            {"turn_index": 0, "stages": {"asr": 150}},  # the same stage again: the last wins
            {"turn_index": 1, "stages": {"asr": 120}},
            {"turn_index": 7, "stages": {"asr": 999}},  # no turn 7
        ]
    }
    deployment.api.put("live", "voice", D4, [record])
    done = deployment.sync(D4, None, "--channel", "voice")
    done_ok(done)
    rows = sorted(
        (r["turn_index"], r["stage"], r["latency_ms"]) for r in deployment.rows("turn_latency")
    )
    assert rows == [(0, "asr", 150), (0, "model", 100), (1, "asr", 120)]
    assert "unique_latency_keys" not in done.stderr
    deployment.assert_no_secret(done)


def test_an_error_body_fails_and_a_shrunken_window_is_reported(deployment: Deployment) -> None:
    api = deployment.api
    thirty = [conversation(f"c{n:02d}", f"{D4}T{n % 24:02d}:00:00Z") for n in range(30)]
    api.put("live", "voice", D4, thirty)
    done_ok(deployment.sync(D4, None, "--channel", "voice"))
    before = deployment.state()

    api.override = lambda query: json_reply(
        {"error": "upstream index unavailable", "conversations": [], "cursor": None}
    )
    failed = deployment.sync(D4, None, "--channel", "voice")
    assert failed.returncode == 1
    assert "a 200 carrying an error: upstream index unavailable" in failed.stdout
    assert deployment.state() == before  # the 30 are still there, KPIs and lake too

    api.override = None
    api.put("live", "voice", D4, thirty[:3])
    shrunk = deployment.sync(D4, None, "--channel", "voice")
    done_ok(shrunk)  # the API may really hold fewer now: loaded, and said loudly
    assert "held 30 conversations before this sync, 3 now" in shrunk.stdout
    assert "resync_kept_most_conversations" in shrunk.stderr
    assert len(deployment.ids()) == 3
    deployment.assert_no_secret(failed, shrunk)
