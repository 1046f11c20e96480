from datetime import UTC, date, datetime
from itertools import pairwise

import pytest

from core.windows import Scope, ScopeError, Window, daily_window, days_between, scopes_for


def test_daily_window_is_the_utc_day_half_open() -> None:
    window = daily_window(date(2026, 3, 29))  # a DST change in Europe: UTC is unaffected
    assert window.start == datetime(2026, 3, 29, tzinfo=UTC)
    assert window.end == datetime(2026, 3, 30, tzinfo=UTC)
    assert window.contains(datetime(2026, 3, 29, 23, 59, 59, 999999, tzinfo=UTC))
    assert not window.contains(datetime(2026, 3, 30, tzinfo=UTC))


def test_window_rejects_naive_and_empty_intervals() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        Window(datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match="not before"):
        Window(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_days_between_is_inclusive_and_rejects_reversed_ranges() -> None:
    assert list(days_between(date(2026, 1, 30), date(2026, 2, 1))) == [
        date(2026, 1, 30),
        date(2026, 1, 31),
        date(2026, 2, 1),
    ]
    with pytest.raises(ValueError, match="after end date"):
        list(days_between(date(2026, 2, 1), date(2026, 1, 1)))


def test_scope_key_round_trips_including_hyphenated_environment() -> None:
    scope = Scope.parse("pre-release.chat")
    assert scope == Scope("pre-release", "chat")
    assert Scope.parse(scope.key) == scope


@pytest.mark.parametrize("key", ["live", "live.", "production.voice"])
def test_scope_parse_names_the_bad_key(key: str) -> None:
    with pytest.raises(ScopeError, match=key.replace(".", r"\.")):
        Scope.parse(key)


def test_scopes_for_is_the_cross_product_in_order() -> None:
    keys = [s.key for s in scopes_for(["live", "sandbox"], ["voice", "chat"])]
    assert keys == ["live.voice", "live.chat", "sandbox.voice", "sandbox.chat"]


def test_nightly_windows_are_yesterday_the_lookback_and_unfinished_windows() -> None:
    from core.windows import nightly_windows

    voice, chat = Scope("live", "voice"), Scope("live", "chat")
    today = date(2026, 11, 23)
    windows = nightly_windows(
        today,
        [voice, chat],
        lookback_days=2,
        held_in_progress=[
            (voice, date(2026, 11, 15)),
            (Scope("sandbox", "voice"), date(2026, 11, 16)),
        ],
        first_day=date(2026, 11, 1),
    )
    days = [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)]
    expected = [(date(2026, 11, 15), voice)] + [(d, s) for d in days for s in (chat, voice)]
    assert windows == sorted(expected)
    # Never before the first partition, never today.
    assert nightly_windows(today, [voice], 5, [], first_day=date(2026, 11, 21)) == [
        (date(2026, 11, 21), voice),
        (date(2026, 11, 22), voice),
    ]


def test_hourly_windows_cover_the_day_and_keys_round_trip() -> None:
    from core.windows import window_from_key, window_key, windows_of_days

    hours = windows_of_days([date(2026, 11, 20)], "hourly")
    assert len(hours) == 24
    assert hours[0].start == datetime(2026, 11, 20, tzinfo=UTC)
    assert hours[-1].end == datetime(2026, 11, 21, tzinfo=UTC)
    assert all(a.end == b.start for a, b in pairwise(hours))
    assert window_key(hours[5]) == "2026-11-20-05:00"
    assert [window_from_key(window_key(w)) for w in hours] == hours
    (day,) = windows_of_days([date(2026, 11, 20)], "daily")
    assert window_key(day) == "2026-11-20" and window_from_key("2026-11-20") == day
    with pytest.raises(ValueError, match="granularity 'weekly'"):
        windows_of_days([date(2026, 11, 20)], "weekly")
