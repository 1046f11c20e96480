"""Saved searches write each query's matches per window, equal to the simulator's ground
truth: transcript matches in chronological order, semantic ones ranked by similarity."""

import pytest

from core.config import ConfigError, SavedSearch, parse_saved_searches
from core.windows import daily_window
from resources.warehouse import Warehouse
from simulator import SimulatorServer
from simulator.selection import similarity
from tests.conftest import SYNC_DAY

WINDOW = daily_window(SYNC_DAY)
SEARCHES = "reservations=transcript:Reservation;human=semantic:talk to a human please"


@pytest.fixture
def sync_settings() -> dict[str, str]:
    return {"POLYAI_SAVED_SEARCHES": SEARCHES}


def test_matches_equal_the_simulators_ground_truth(
    run_sync_job, simulator: SimulatorServer, warehouse: Warehouse
) -> None:
    run_sync_job()
    truth = list(simulator.dataset.conversations_in("live", ["voice"], WINDOW.start, WINDOW.end))
    matches = warehouse.read_table("saved_search_matches")

    booked = matches[matches["search"] == "reservations"].sort_values("rank")
    expected = [
        c["id"]
        for c in truth
        if any(
            "reservation" in (t["user_input"] + " " + t["agent_response"]).casefold()
            for t in c["turns"]
        )
    ]
    assert booked["conversation_id"].tolist() == expected and expected
    assert all("reservation" in text.casefold() for text in booked["matched_text"])

    human = matches[matches["search"] == "human"].sort_values("rank")
    scored = sorted(
        ((-similarity("talk to a human please", c), c["started_at"], c["id"]) for c in truth),
    )
    assert human["conversation_id"].tolist() == [cid for score, _, cid in scored if score < 0]
    assert human["rank"].tolist() == list(range(1, len(human) + 1))

    run_sync_job()  # a re-sync replaces the window's matches
    assert len(warehouse.read_table("saved_search_matches")) == len(matches)


def test_saved_search_setting_is_parsed_and_checked() -> None:
    assert parse_saved_searches(SEARCHES) == (
        SavedSearch("reservations", "transcript", "Reservation"),
        SavedSearch("human", "semantic", "talk to a human please"),
    )
    assert parse_saved_searches("") == ()
    for bad in ("no-equals", "x=fuzzy:text", "x=transcript:", "a=transcript:x;a=semantic:y"):
        with pytest.raises(ConfigError, match="POLYAI_SAVED_SEARCHES"):
            parse_saved_searches(bad)
