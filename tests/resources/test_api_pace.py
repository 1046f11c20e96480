"""The in-flight limit: a ceiling that holds across threads and forked processes, halved once
by a burst of 429s, climbing back on healthy answers, and holding new requests for a
``Retry-After``."""

import multiprocessing
import threading
import time
from typing import Any

import pytest

from resources.api_pace import InFlightLimit, pace_for


def test_no_more_requests_in_flight_than_the_limit_from_many_threads() -> None:
    pace = InFlightLimit(3)
    lock = threading.Lock()
    now = {"in_flight": 0, "most": 0}

    def request() -> None:
        for _ in range(20):
            ticket = pace.acquire()
            with lock:
                now["in_flight"] += 1
                now["most"] = max(now["most"], now["in_flight"])
            time.sleep(0.001)
            with lock:
                now["in_flight"] -= 1
            pace.release(ticket)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert now["most"] == 3
    report = pace.report()
    assert (report.peak, report.requests, report.in_flight) == (3, 160, 0)


def test_a_burst_of_429s_halves_the_limit_once_and_healthy_answers_raise_it_back() -> None:
    pace = InFlightLimit(8)
    pace.start_report()
    tickets = [pace.acquire() for _ in range(8)]
    for ticket in tickets:  # the same burst: every request was sent before the first cut
        pace.release(ticket, throttled=True)
    assert pace.report().limit == 4
    pace.release(pace.acquire(), throttled=True)  # sent after the cut: cuts again
    assert pace.report().limit == 2
    climbed = []
    while pace.report().limit < 8:
        pace.release(pace.acquire())
        climbed.append(pace.report().limit)
    report = pace.report()
    assert (report.lowest, report.cuts, report.limit) == (2, 2, 8)
    # Additive: one more per round of answers (2 at 2, 3 at 3, ...): 2+3+...+7 answers.
    assert len(climbed) == sum(range(2, 8))
    pace.release(pace.acquire())
    assert pace.report().limit == 8  # never above the maximum


def test_the_limit_never_falls_below_one() -> None:
    pace = InFlightLimit(2)
    for _ in range(5):
        pace.release(pace.acquire(), throttled=True)
    assert pace.report().limit == 1
    pace.release(pace.acquire())
    assert pace.report().limit == 2


def test_a_retry_after_holds_every_request_not_yet_sent() -> None:
    pace = InFlightLimit(4)
    pace.release(pace.acquire(), throttled=True, retry_after=0.4)
    asked = time.monotonic()
    pace.release(pace.acquire())
    assert time.monotonic() - asked >= 0.35


def _hold(pace: InFlightLimit, held: int, release: Any) -> None:
    tickets = [pace.acquire() for _ in range(held)]
    release.wait(30)
    for ticket in tickets:
        pace.release(ticket)


def test_processes_forked_after_it_was_made_share_the_limit() -> None:
    context = multiprocessing.get_context("fork")
    pace = InFlightLimit(3)
    release = context.Event()
    child = context.Process(target=_hold, args=(pace, 2, release))
    child.start()
    deadline = time.monotonic() + 30
    while pace.report().in_flight < 2:
        assert time.monotonic() < deadline, "the child's requests never showed here"
        time.sleep(0.01)
    ticket = pace.acquire()  # the third and last slot
    waited = threading.Event()

    def fourth() -> None:
        pace.release(pace.acquire())
        waited.set()

    thread = threading.Thread(target=fourth)
    thread.start()
    assert not waited.wait(0.3), "a fourth request went out beside three in flight"
    release.set()
    child.join(30)
    assert waited.wait(10)
    thread.join()
    pace.release(ticket)
    assert pace.report().in_flight == 0


def test_one_limit_per_key_and_address() -> None:
    first = pace_for("http://127.0.0.1:1/", "key-a", 8)
    assert pace_for("http://127.0.0.1:1", "key-a", 8) is first
    assert pace_for("http://127.0.0.1:1", "key-b", 8) is not first
    assert pace_for("http://127.0.0.1:2", "key-a", 8) is not first


def test_a_maximum_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1, not 0"):
        InFlightLimit(0)
