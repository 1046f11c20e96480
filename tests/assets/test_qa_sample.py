"""The QA sample: the configured number of conversations per window, all from the window,
in the warehouse and as a CSV in the lake; redrawn, not duplicated, on a re-sync."""

from pathlib import Path

import pandas as pd

from core.windows import daily_window
from resources.warehouse import Warehouse
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY

WINDOW = daily_window(SYNC_DAY)


def test_each_window_gets_a_sample_of_the_configured_size_from_its_range(
    run_sync_job, simulator: SimulatorServer, warehouse: Warehouse, tmp_path: Path
) -> None:
    run_sync_job()
    sample = warehouse.read_table("qa_samples")
    in_window = {
        c["id"]: c
        for c in simulator.dataset.conversations_in("live", ["voice"], WINDOW.start, WINDOW.end)
    }
    assert len(in_window) > 20
    assert len(sample) == 20  # POLYAI_QA_SAMPLE_SIZE's default
    assert sample["conversation_id"].is_unique
    assert set(sample["conversation_id"]) <= set(in_window)
    assert set(sample["environment"]) == {"live"} and set(sample["channel"]) == {"voice"}
    first = sample.iloc[0]
    source = in_window[first["conversation_id"]]
    assert first["transcript"].splitlines()[0] in (
        f"user: {source['turns'][0]['user_input']}",
        f"agent: {source['turns'][0]['agent_response']}",
    )
    csv = tmp_path / f"lake/qa_samples/environment=live/channel=voice/date={SYNC_DAY}/day.csv"
    assert sorted(pd.read_csv(csv)["conversation_id"]) == sorted(sample["conversation_id"])

    run_sync_job()  # a re-sync redraws the window's sample in place
    assert len(warehouse.read_table("qa_samples")) == 20
