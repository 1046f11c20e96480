"""Every environment variable polyai-sync reads, and every default, each written once.

:class:`Env` names the variables; :data:`DEFAULTS` holds the only copy of each default
(:class:`core.config.Settings` parses them like any other value).
"""

from __future__ import annotations

import os
from enum import StrEnum, auto
from pathlib import Path
from typing import Final

from core.api_contract import MAX_LIMIT

LOCAL_DIR: Final = Path(".polyai-sync")
"""Project-local folder (git-ignored) for the default warehouse and Dagster instance."""


class Env(StrEnum):
    """Every environment variable polyai-sync reads. A member's value is its own name, so each
    name is written once, here; a misspelt one fails at import instead of reading as unset."""

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
        return name

    POLYAI_BASE_URL = auto()
    POLYAI_REGION = auto()
    POLYAI_API_KEY = auto()
    POLYAI_ACCOUNT_ID = auto()
    POLYAI_PROJECT_ID = auto()
    POLYAI_ENVIRONMENTS = auto()
    POLYAI_CHANNELS = auto()
    POLYAI_CHANNEL_MAP = auto()
    POLYAI_CHANNEL_FILTER = auto()
    POLYAI_SYNC_START = auto()
    WAREHOUSE_URL = auto()
    WAREHOUSE_SCHEMA = auto()
    WAREHOUSE_MAX_MEMORY_MB = auto()
    POLYAI_QUARANTINE_MAX_FRACTION = auto()
    POLYAI_LOOKBACK_DAYS = auto()
    POLYAI_SCHEDULE_HOUR = auto()
    POLYAI_WINDOWS_PER_RUN = auto()
    POLYAI_SYNC_WORKERS = auto()
    POLYAI_WINDOW = auto()
    LAKE_URL = auto()
    POLYAI_QA_SAMPLE_SIZE = auto()
    POLYAI_SAVED_SEARCHES = auto()
    POLYAI_PAGE_SIZE = auto()
    POLYAI_REQUEST_DEADLINE_SECONDS = auto()
    POLYAI_ALLOW_INSECURE_HTTP = auto()
    POLYAI_HASH_PHONE_NUMBERS = auto()
    POLYAI_PHONE_HASH_SALT = auto()
    POLYAI_REDACT_TRANSCRIPTS = auto()
    POLYAI_ALERT_WEBHOOK_URL = auto()
    DAGSTER_UI_URL = auto()
    POLYAI_RETENTION_DAYS = auto()


DEFAULTS: Final[dict[str, str]] = {
    Env.POLYAI_ENVIRONMENTS: "live",
    Env.POLYAI_CHANNELS: "voice,chat",
    Env.POLYAI_CHANNEL_MAP: "",  # the defaults of core.api_contract.CHANNEL_LABELS
    Env.POLYAI_CHANNEL_FILTER: "both",
    Env.POLYAI_SYNC_START: "2025-01-01",
    Env.WAREHOUSE_URL: f"duckdb:///{LOCAL_DIR / 'warehouse.duckdb'}",
    Env.WAREHOUSE_SCHEMA: "polyai",
    Env.POLYAI_QUARANTINE_MAX_FRACTION: "0.01",
    Env.POLYAI_LOOKBACK_DAYS: "2",
    Env.POLYAI_SCHEDULE_HOUR: "2",
    Env.POLYAI_WINDOWS_PER_RUN: "7",
    Env.POLYAI_SYNC_WORKERS: str(os.cpu_count() or 1),  # every core
    Env.POLYAI_WINDOW: "daily",
    Env.LAKE_URL: str(LOCAL_DIR / "lake"),
    Env.POLYAI_QA_SAMPLE_SIZE: "20",
    Env.POLYAI_SAVED_SEARCHES: "",
    Env.POLYAI_PAGE_SIZE: str(MAX_LIMIT),
    Env.POLYAI_REQUEST_DEADLINE_SECONDS: "300",
    Env.POLYAI_ALLOW_INSECURE_HTTP: "false",
    Env.DAGSTER_UI_URL: "http://127.0.0.1:3000",  # where `polyai-sync ui` serves
    Env.POLYAI_RETENTION_DAYS: "0",  # off
}
"""The only place a default is written: :class:`Settings` has none of its own, so
``Settings.from_env({})`` is the default configuration. A variable missing here defaults to
empty: the source's address, identity and secret, the alert webhook, the switches that are
off unless set, and WAREHOUSE_MAX_MEMORY_MB (unset: the warehouse chooses)."""

SOURCE_VARIABLES: Final = (
    f"{Env.POLYAI_BASE_URL} or {Env.POLYAI_REGION}",
    Env.POLYAI_API_KEY,
    Env.POLYAI_ACCOUNT_ID,
    Env.POLYAI_PROJECT_ID,
)
