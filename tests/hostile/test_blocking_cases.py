"""Values and responses that used to block a window forever with a raw Python error (issue 15),
through the real CLI: a record that cannot be a row is quarantined with the reason, a response
that cannot be read is the client's own error naming it, and the window's state never keeps
a value that makes every re-run fail the same way."""

import gzip
from datetime import date

import pytest

from core.query import ConversationQuery
from core.windows import Scope, daily_window
from resources.polyai_api import PolyAIResponseError
from tests.hostile.harness import Deployment
from tests.hostile.server import Query, Reply, conversation, json_reply

pytestmark = pytest.mark.e2e

DAYS = [f"2026-01-{d:02d}" for d in range(4, 10)]
RAW_ERRORS = ("Traceback", "RecursionError", "KeyError", "OverflowError", "AttributeError")


def _day(query: Query) -> str:
    return query["start_time"][0][:10]


def test_each_bad_value_or_response_is_quarantined_or_named_and_a_fixed_api_unblocks(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    d_values, d_deep, d_object, d_encoding, d_long, d_endless = DAYS
    overflow = "9999-12-31T23:59:59-01:00"  # the year 10000 once in UTC
    api.put(
        "live",
        "voice",
        d_values,
        [
            conversation("dup", f"{d_values}T03:00:00Z"),
            conversation("dup", f"{d_values}T03:00:00Z"),  # the same id twice on a page
            {"id": "nostart", "environment": "live", "channel": "voice", "turns": []},
            conversation("ok1", f"{d_values}T01:00:00Z"),
            conversation("late", overflow),  # no usable started_at: quarantined
            conversation("t1", f"{d_values}T02:00:00Z", turns=1)
            | {"turns": [{"user_input": "hi", "user_input_datetime": overflow}]},
        ],
    )
    for day in DAYS[1:]:
        api.put(
            "live",
            "voice",
            day,
            [conversation(f"k{day[-2:]}-{n}", f"{day}T0{n}:00:00Z") for n in range(5)],
        )
    deep = b'{"conversations": [' + b"[" * 10_000 + b"]" * 10_000 + b'], "cursor": null}'

    def hostile(query: Query) -> Reply | None:
        day = _day(query)
        if "sample" in query:
            return None  # the QA sample of d_values: served (and paged) like any query
        if day == d_deep:
            return Reply(body=deep)
        if day == d_encoding:
            return Reply(
                body=b'{"conversations": [], "cursor": null}',
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        return None

    def rewrite(query: Query, body: dict) -> dict:
        day = _day(query)
        if day == d_object:
            return {**body, "cursor": {"after": 5}}
        if day == d_long:
            return {**body, "cursor": "c" * 100_000}
        if day == d_endless:  # the same five ids under ever new cursors
            return {**body, "cursor": f"again-{len(api.requests)}"}
        return body

    api.override, api.rewrite = hostile, rewrite
    done = deployment.sync(
        DAYS[0],
        DAYS[-1],
        "--channel",
        "voice",
        POLYAI_WINDOWS_PER_RUN="1",
        POLYAI_QUARANTINE_MAX_FRACTION="0.6",
        POLYAI_QA_SAMPLE_SIZE="4",
        POLYAI_PAGE_SIZE="2",
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1
    assert not any(name in out for name in RAW_ERRORS), out
    assert f"{d_values} live.voice: 3 conversations" in done.stdout  # dup (once), ok1, t1
    for day, said in [
        (d_deep, "nested more deeply than JSON parsers read"),
        (d_object, "a cursor that is a JSON dict, not a string"),
        (d_encoding, "cannot be read as its Content-Encoding ('gzip') says"),
        (d_long, "a cursor of 100,000 characters"),
        (d_endless, "brought no conversation not seen earlier"),
    ]:
        assert f"{day} live.voice: FAILED" in done.stdout and said in done.stdout, (day, out)

    reasons = {q["conversation_id"]: q["reason"] for q in deployment.rows("quarantine")}
    assert "out of range once in UTC" in reasons["late"]
    assert reasons["nostart"] == "missing started_at"
    (t1_turn,) = deployment.rows("turns", "conversation_id = 't1'")
    assert t1_turn["user_input_datetime"] is None  # not a timestamp a column holds: null
    # The sample: its first page only (this server pages sample mode too), no record that
    # cannot be a row, no id twice.
    assert len([q for q in api.requests if "sample" in q]) == 1
    sampled = sorted(r["conversation_id"] for r in deployment.rows("qa_samples"))
    assert sampled == ["dup", "ok1"]

    # No state keeps the 100 KB cursor; once the API behaves, the blocked windows sync.
    cursors = [r["cursor"] or "" for r in deployment.rows("sync_state")]
    assert max(map(len, cursors)) < 100
    api.override = api.rewrite = None
    fixed = deployment.sync(DAYS[1], DAYS[-1], "--channel", "voice")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert len(deployment.ids(f"conversation_date >= '{DAYS[1]}'")) == 5 * 5
    deployment.assert_no_secret(done, fixed)


def test_a_stalled_response_is_cut_at_the_deadline_and_retried(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    day = DAYS[0]
    api.put("live", "voice", day, [conversation(f"s{n}", f"{day}T0{n}:00:00Z") for n in range(3)])
    dripped = []

    def drip_once(query: Query) -> Reply | None:
        if dripped:
            return None
        dripped.append(query)
        return Reply(body=(b" " for _ in range(600)), pause=1.0)  # a byte a second

    api.override = drip_once
    done = deployment.sync(day, None, "--channel", "voice", POLYAI_REQUEST_DEADLINE_SECONDS="2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert deployment.ids() == ["s0", "s1", "s2"]
    assert len([q for q in api.requests if "sample" not in q]) == 2  # cut, then retried once
    deployment.assert_no_secret(done)


def test_a_window_failing_on_what_may_pass_says_so_and_one_needing_a_change_does_not(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    busy, broken = DAYS[0], DAYS[1]

    def failing(query: Query) -> Reply | None:
        if _day(query) == busy:  # 503 on every attempt, retried at once (Retry-After: 0)
            return Reply(503, b'{"detail": "overloaded"}', {"Retry-After": "0"})
        return Reply(body=b'{"conversations": {}, "cursor": null}')  # not the documented shape

    api.override = failing
    transient = deployment.sync(busy, None, "--channel", "voice")
    permanent = deployment.sync(broken, None, "--channel", "voice")

    assert transient.returncode == permanent.returncode == 1
    assert len(api.requests) == 6 + 1  # every attempt at the 503; the bad body is not retried
    (line,) = [line for line in transient.stderr.splitlines() if line.startswith("  2026")]
    assert "HTTP 503" in line and "overloaded" in line
    assert line.endswith("(transient: the same command may succeed later)")
    (line,) = [line for line in permanent.stderr.splitlines() if line.startswith("  2026")]
    assert "has no 'conversations' list" in line and "transient" not in line


def test_a_gzip_body_is_inflated_only_up_to_the_bound(duckdb_deployment: Deployment) -> None:
    bomb = gzip.compress(b'{"conversations": [' + b" " * 64_000_000 + b'], "cursor": null}')
    assert len(bomb) < 100_000
    api = duckdb_deployment.api
    api.override = lambda query: Reply(
        body=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    client = duckdb_deployment.client(max_response_bytes=8_000_000)
    query = ConversationQuery.for_window(Scope("live", "voice"), daily_window(date(2026, 1, 4)))
    with pytest.raises(PolyAIResponseError, match="larger than 8,000,000 bytes"):
        list(client.iter_pages(query))


def test_a_run_that_fails_after_its_windows_landed_fails_the_sync(
    duckdb_deployment: Deployment,
) -> None:
    """The windows landed, then a step after the sync (the QA sample) failed: the CLI says so
    and exits 1, instead of a success line."""
    deployment, api = duckdb_deployment, duckdb_deployment.api
    day = DAYS[0]
    api.put("live", "voice", day, [conversation(f"q{n}", f"{day}T0{n}:00:00Z") for n in range(3)])
    api.override = lambda query: (
        json_reply({"detail": "sampling is not enabled for this project"}, 403)
        if "sample" in query
        else None
    )
    done = deployment.sync(day, None, "--channel", "voice", POLYAI_QA_SAMPLE_SIZE="2")
    assert "1 of 1 window(s) synced" in done.stdout  # the tables landed
    assert done.returncode == 1
    assert "FAILED: qa_samples:" in done.stderr and "HTTP 403" in done.stderr
    assert deployment.ids() == ["q0", "q1", "q2"]
    deployment.assert_no_secret(done)
