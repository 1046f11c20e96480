"""The privacy controls end to end: with phone hashing and transcript redaction on, no email,
phone or card number a caller said, and no caller's phone number, reaches any table of the
warehouse (raw JSON, quarantine and QA sample included) or any file of the lake; with them
off, the same search finds them (so it could fail). On both engines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core.privacy import HASH_PREFIX, hash_number
from core.windows import daily_window
from resources.warehouse import Warehouse
from simulator import SimulatorConfig, SimulatorServer
from tests.conftest import SYNC_DAY, everything_stored

SALT = "pepper-for-tests-3f9a1c"
SAID = ("jane.doe@example.com", "7700 900123", "4111 1111 1111 1111", "020 7946 0958",
        "5500-0000-0000-0004")  # fmt: skip


@pytest.fixture
def sim_config(sim_config: SimulatorConfig) -> SimulatorConfig:
    return replace(sim_config, pii_rate=0.2)


@pytest.fixture(params=[True, False], ids=["private", "plain"])
def private(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
def sync_settings(private: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    if not private:
        return {}
    monkeypatch.setenv("POLYAI_PHONE_HASH_SALT", SALT)  # the resource reads it as an EnvVar
    return {
        "POLYAI_HASH_PHONE_NUMBERS": "true",
        "POLYAI_PHONE_HASH_SALT": SALT,
        "POLYAI_REDACT_TRANSCRIPTS": "true",
        "POLYAI_QA_SAMPLE_SIZE": "50",
    }


def test_redacted_values_and_phone_numbers_reach_neither_warehouse_nor_lake(
    run_sync_job, simulator: SimulatorServer, warehouse: Warehouse, tmp_path: Path, private: bool
) -> None:
    run_sync_job()
    window = daily_window(SYNC_DAY)
    source = list(simulator.dataset.conversations_in("live", ["voice"], window.start, window.end))
    callers = {c["from_number"] for c in source if c["from_number"]}
    said = {phrase for phrase in SAID if any(phrase in t["user_input"] for c in source
                                               for t in c["turns"])}  # fmt: skip
    assert len(said) == len(SAID) and callers  # the data really holds what must not be stored

    stored = everything_stored(warehouse, tmp_path / "lake")
    leaked = sorted(value for value in said | callers if value in stored)
    if not private:
        assert leaked == sorted(said | callers)  # the search finds them when nothing hides them
        return
    assert leaked == []
    conversations = warehouse.read_table("conversations").set_index("id")
    for record in source:
        if record["from_number"]:
            stored_number = conversations.loc[record["id"], "from_number"]
            assert stored_number == hash_number(record["from_number"], SALT.encode())
            assert stored_number.startswith(HASH_PREFIX)
    turns = warehouse.read_table("turns")
    assert turns["user_input"].str.contains(r"\[email\]|\[phone\]|\[card\]").sum() > 0
