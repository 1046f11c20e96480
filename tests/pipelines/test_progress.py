from pipelines.progress import SyncProgress, api_pace


def test_progress_lines_show_done_total_rate_and_time_left() -> None:
    lines: list[str] = []
    now = [100.0]
    progress = SyncProgress(total=4, write=lines.append, clock=lambda: now[0])
    now[0] += 10
    progress.window_done("2026-11-20 live.voice", 500, 2000, 10.0)
    now[0] += 10
    progress.window_failed("2026-11-20 live.chat", "HTTP 403")
    assert lines == [
        "[1/4] 2026-11-20 live.voice: 500 conversations, 2000 turns (10.0s) | "
        "500 conversations, 50/s, 10s elapsed, ~30s left",
        "[2/4] 2026-11-20 live.chat: FAILED: HTTP 403 | "
        "500 conversations, 25/s, 20s elapsed, ~20s left",
    ]
    assert (progress.done, progress.failed) == (2, 1)


def test_long_durations_read_as_minutes_and_hours() -> None:
    lines: list[str] = []
    now = [0.0]
    progress = SyncProgress(total=100, write=lines.append, clock=lambda: now[0])
    now[0] = 150
    progress.window_done("d s", 1, 1, 1.0)
    assert "2m30s elapsed, ~4h07m left" in lines[0]


def test_a_window_line_ends_with_what_the_api_requests_were_doing() -> None:
    lines: list[str] = []
    progress = SyncProgress(total=2, write=lines.append, clock=lambda: 1.0)
    progress.window_done("d s", 1, 1, 1.0, api_pace(6, 8, 7.44))
    progress.window_done("d s", 1, 1, 1.0, api_pace(None, None, None))
    assert lines[0].endswith(" | API: 6 in flight (limit 8), 7.4 requests/s")
    assert "API" not in lines[1]
