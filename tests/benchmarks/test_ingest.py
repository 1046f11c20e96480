"""The ingest benchmark runs end to end at a tiny size, and refuses contenders that disagree.

Its figures are not asserted (performance lives in the benchmark's own output, see
docs/performance.md); what is tested is that every contender lands the same rows and the
verdict prints.
"""

import subprocess
import sys

import pytest

from benchmarks.ingest import CONTENDERS, Landed, Result, check_same_rows, ratio_line

pytest.importorskip("dlt", reason="the benchmark's peers: uv sync --group bench")


@pytest.mark.e2e
def test_every_contender_lands_the_same_rows_and_the_verdict_prints(postgres_server: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.ingest",
            "--sizes",
            "60",  # one size: the suite's budget (two sizes took 117 s); the peak-RSS ratio
            # across sizes is the last test's
            "--days",
            "3",  # three windows, three runs through Dagster: the run's shape, not its length
            "--postgres-url",
            postgres_server,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("N = 60:"))
    rows = lines[header + 2 : header + 2 + len(CONTENDERS)]
    assert [row.split("  ")[1].strip() for row in rows] == list(CONTENDERS)
    assert "N = 60: 60 conversations" in done.stdout and "3 daily windows" in done.stdout
    verdict = lines[-1]
    ratios = ("polyai-sync/dlt", "polyai-sync/floor", "source/polyai-sync",
              "(PostgreSQL)/DuckDB", "(PostgreSQL x2)/DuckDB", "Dagster/in-process")  # fmt: skip
    for ratio in ratios:
        assert ratio in verdict


def landed(conversations: int, turns: int) -> Landed:
    return Landed(conversations, turns, seconds=1.0, peak_rss=100 * 2**20)


def test_contenders_that_land_different_rows_fail_the_run_naming_them() -> None:
    results = [
        Result("polyai-sync", landed(100, 1200), 1),
        Result("dlt (defaults)", landed(99, 1190), 1),
    ]
    with pytest.raises(SystemExit, match=r"dlt \(defaults\): 99 conversations, 1190 turns"):
        check_same_rows(100, results)
    check_same_rows(100, results[:1])  # agreeing contenders pass


def test_the_ratio_line_compares_turn_rates_at_the_largest_size() -> None:
    def result(name: str, turns_per_second: int, rss_mib: int) -> Result:
        return Result(name, Landed(10, turns_per_second, 1.0, rss_mib * 2**20), 1)

    by_size = {
        10: [result("polyai-sync", 100, 100), result("floor", 100, 50)],
        100: [
            result("polyai-sync", 300, 110),
            result("dlt (defaults)", 50, 400),
            result("dlt (tuned)", 100, 200),
            result("floor", 400, 60),
        ],
    }
    line = ratio_line(by_size)
    assert "polyai-sync/dlt 3.00x (dlt (tuned))" in line
    assert "memory polyai-sync/dlt 0.55x" in line
    assert "polyai-sync/floor 0.75x" in line
    assert "peak RSS N=100/N=10 1.10x" in line


@pytest.mark.e2e
def test_the_backfill_scenario_times_every_contender_and_dagsters_own_cost() -> None:
    from benchmarks.backfill import CONTENDERS as BACKFILL_CONTENDERS
    from benchmarks.backfill import DAGSTER_FLOOR

    tiny = ["--days", "2", "--per-day", "20", "--latency-ms", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "--scenario", "backfill", *tiny],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:-1]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| contender")
    }
    assert list(rows) == list(BACKFILL_CONTENDERS)
    landed = {name: cells[2].strip() for name, cells in rows.items()}
    assert landed.pop(DAGSTER_FLOOR) == "-"  # it lands nothing: its steps do nothing
    (count,) = set(landed.values())  # every other contender landed the same conversations
    assert int(count) > 0
    assert rows[DAGSTER_FLOOR][3].strip() == "0"  # and it asks the API for nothing
    assert "Dagster path / Dagster's own cost:" in done.stdout


def test_a_contender_stopped_at_the_memory_cap_leaves_no_folder_behind(
    tmp_path, monkeypatch
) -> None:
    import tempfile

    from benchmarks import ingest

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this process's folders
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # and the contender's, a process of its own
    (result,) = ingest.bench_size(60, ["dlt (tuned)"], ingest.Limits(memory_bytes=1, seconds=60))
    assert result.landed is None and "memory cap" in (result.failure or "")
    assert list(tmp_path.glob("polyai-bench-*")) == []
