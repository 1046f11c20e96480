"""The Dagster UI in a real headless Chromium, against a warehouse the test has just synced.

Chromium is Debian's (`.ci/run` installs it); Playwright only drives it and downloads nothing.
Screenshots are saved under test-artifacts/ for a human to look at.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assets.checks import CHECKS
from core.windows import daily_window
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY, free_port
from tests.pipelines.test_cli import run_cli, source_env

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The flags a closed network needs: no background fetches, no first-run work.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Debian's chromium (see .ci/run)")
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402


@pytest.fixture
def ui(simulator: SimulatorServer, tmp_path: Path) -> Iterator[str]:
    env = source_env(simulator, tmp_path)
    synced = run_cli("sync", "--start", str(SYNC_DAY), "--end", str(SYNC_DAY), env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", str(ROOT / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/server_info", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    try:
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def visit(page: Page, url: str, wait_for: str, shot: str) -> str:
    page.goto(url)
    page.get_by_text(wait_for).first.wait_for(timeout=30_000)
    skip = page.get_by_role("button", name="Skip")  # the first-visit community dialog
    if skip.count():
        skip.first.click()
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
    return page.inner_text("body")


def test_ui_shows_the_assets_their_row_counts_and_passed_checks(
    ui: str, simulator: SimulatorServer
) -> None:
    base = ui
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            lineage = visit(page, f"{base}/asset-groups", "polyai_analytics", "asset-lineage")
            assert "polyai" in lineage and "polyai_analytics" in lineage
            groups = f"{base}/locations/pipelines.definitions/asset-groups"
            graph = visit(page, f"{groups}/polyai", "turn_genai", "asset-graph-sync")
            for name in ("conversations", "turns", "turn_latency", "turn_genai"):
                assert name in graph
            assert re.search(r"(\d+) / \1 Passed", graph), "the graph shows checks passed"
            kpis = visit(page, f"{groups}/polyai_analytics", "latency_kpis", "asset-graph-kpis")
            for name in ("conversation_kpis", "latency_kpis", "genai_kpis"):
                assert name in kpis

            events = visit(
                page, f"{base}/assets/polyai/conversations?view=events", "dagster/row_count",
                "conversations-events",
            )  # fmt: skip
            shown = re.search(r"Partition (\S+)\|(\S+) materialized", events)
            assert shown, events[:2000]
            day, scope = shown.groups()
            environment, channel = scope.split(".")
            window = daily_window(SYNC_DAY)
            served = simulator.dataset.conversations_in(
                environment, [channel], window.start, window.end
            )
            expected = sum(1 for _ in served)
            assert day == str(SYNC_DAY)
            assert re.search(rf"dagster/row_count\s+{expected}\b", events), events[:3000]

            checks = visit(
                page, f"{base}/assets/polyai/conversations?view=checks", "Execute all",
                "conversations-checks",
            )  # fmt: skip
            names = [c.name for c in CHECKS if c.asset == "conversations"]
            for name in names:
                assert name in checks
            assert checks.count("Succeeded") >= len(names)
            assert "Failed" not in checks
        finally:
            browser.close()
