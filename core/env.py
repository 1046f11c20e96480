"""Every environment variable polyai-sync reads, and every default, each written once.

:class:`Env` names the variables; :data:`DEFAULTS` holds the only copy of each default
(:class:`core.config.Settings` parses them like any other value).
"""

from __future__ import annotations

import os
from enum import StrEnum, auto
from pathlib import Path
from typing import Final

from core.api_contract import CHANNEL_LABELS, MAX_LIMIT

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
    POLYAI_MAX_IN_FLIGHT = auto()
    POLYAI_MAX_ATTEMPTS = auto()
    POLYAI_WINDOW = auto()
    LAKE_URL = auto()
    POLYAI_QA_SAMPLE_SIZE = auto()
    POLYAI_SAVED_SEARCHES = auto()
    POLYAI_PAGE_SIZE = auto()
    POLYAI_REQUEST_DEADLINE_SECONDS = auto()
    POLYAI_REQUEST_BUDGET_SECONDS = auto()
    POLYAI_ALLOW_INSECURE_HTTP = auto()
    POLYAI_HASH_PHONE_NUMBERS = auto()
    POLYAI_PHONE_HASH_SALT = auto()
    POLYAI_REDACT_TRANSCRIPTS = auto()
    POLYAI_ALERT_WEBHOOK_URL = auto()
    DAGSTER_UI_URL = auto()
    POLYAI_RETENTION_DAYS = auto()
    POLYAI_AUTOMATION_INTERVAL_SECONDS = auto()
    POLYAI_DBT_MODELS = auto()


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
    Env.POLYAI_WINDOWS_PER_RUN: "30",
    Env.POLYAI_SYNC_WORKERS: str(os.cpu_count() or 1),  # every core
    Env.POLYAI_MAX_IN_FLIGHT: "8",
    Env.POLYAI_MAX_ATTEMPTS: "6",
    Env.POLYAI_WINDOW: "daily",
    Env.LAKE_URL: str(LOCAL_DIR / "lake"),
    Env.POLYAI_QA_SAMPLE_SIZE: "20",
    Env.POLYAI_SAVED_SEARCHES: "",
    Env.POLYAI_PAGE_SIZE: str(MAX_LIMIT),
    Env.POLYAI_REQUEST_DEADLINE_SECONDS: "300",
    Env.POLYAI_REQUEST_BUDGET_SECONDS: "600",
    Env.POLYAI_ALLOW_INSECURE_HTTP: "false",
    Env.DAGSTER_UI_URL: "http://127.0.0.1:3000",  # where `polyai-sync ui` serves
    Env.POLYAI_RETENTION_DAYS: "0",  # off
    Env.POLYAI_AUTOMATION_INTERVAL_SECONDS: "30",
    Env.POLYAI_DBT_MODELS: "true",
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

DESCRIPTIONS: Final[dict[str, str]] = {
    Env.POLYAI_BASE_URL: "API root; overrides `POLYAI_REGION` (the simulator's address, a "
    "proxy). Credentials in it are refused (the API takes the key alone), and so is plain "
    "`http://` to a host other than loopback unless `POLYAI_ALLOW_INSECURE_HTTP` is set",
    Env.POLYAI_REGION: "`us-1`, `uk-1` or `euw-1`: builds the base URL "
    "`https://api.<region>.platform.polyai.app`; `studio` for an Agent Studio (self-serve) "
    "project: `https://api.studio.poly.ai`",
    Env.POLYAI_API_KEY: "project API key; sent only in the `x-api-key` header, never printed; "
    "a key holding whitespace or a control character is refused",
    Env.POLYAI_ACCOUNT_ID: "account id in the endpoint path (the workspace id, `ws-...`): "
    "letters, digits and `_ . : -`",
    Env.POLYAI_PROJECT_ID: "project id in the endpoint path (the agent id, `PROJECT-...`): "
    "letters, digits and `_ . : -`",
    Env.POLYAI_ENVIRONMENTS: "comma-separated, of `sandbox`, `pre-release`, `live`",
    Env.POLYAI_CHANNELS: "comma-separated channels (the partition keys' second half)",
    Env.POLYAI_CHANNEL_MAP: "the response labels each channel accepts besides its name, "
    "`channel=LABEL,LABEL` separated by `;`; an entry replaces that channel's defaults",
    Env.POLYAI_CHANNEL_FILTER: "what the request's `channel` filter sends: `both` (the "
    "channel's name and its labels), `labels`, or `name`",
    Env.POLYAI_SYNC_START: "first partition date (UTC, `YYYY-MM-DD`)",
    Env.WAREHOUSE_URL: "the warehouse: `duckdb:///path/to/file.duckdb` (relative to the "
    "working directory; `duckdb:////abs/path` for an absolute one) or "
    "`postgresql://user@host:5432/database` (PostgreSQL 14 or newer; libpq's `PGPASSWORD`, "
    "`~/.pgpass` and `sslmode=` parameters work; a password in the URL is masked in every "
    "message and the resource is bound as `EnvVar`, so the UI shows the variable's name)",
    Env.WAREHOUSE_SCHEMA: "SQL schema that holds the tables",
    Env.WAREHOUSE_MAX_MEMORY_MB: "DuckDB only: the most memory one transaction holding large "
    "text values may take (at least 256); a page or a publish that would need more is "
    "refused with a message naming it",
    Env.POLYAI_QUARANTINE_MAX_FRACTION: "share of a window's records that may fail "
    "validation before its run fails",
    Env.POLYAI_LOOKBACK_DAYS: "the nightly run also re-syncs this many days before yesterday",
    Env.POLYAI_SCHEDULE_HOUR: "UTC hour of the nightly run",
    Env.POLYAI_WINDOWS_PER_RUN: "windows a backfill run covers, at most (the backfill policy, "
    "and the CLI's grouping): the windows of a run share a round of requests and one set of "
    "steps, and each fails alone. At 1 s a page, 120 windows took 56 s with 30 and 91 s with 7",
    Env.POLYAI_SYNC_WORKERS: "pages normalized and (DuckDB) staged at once, beside the "
    "writer (`sync/feed.py`); a cap for a small or shared machine. `0` keeps all of a sync's "
    "work, fetching included, in the writer's process, one request at a time (a one-core "
    "machine does so whatever this says); more than the machine's cores counts as its cores",
    Env.POLYAI_MAX_IN_FLIGHT: "requests a sync has in flight at once, at most (1 to 64): "
    "windows are fetched side by side, one page in flight each, by that many processes. A "
    "429 halves the limit for every request of the key, and it climbs back by one per round "
    "of answers that are not (`resources/api_pace.py`). A run keeps up to this many pages "
    "in memory, one a window",
    Env.POLYAI_MAX_ATTEMPTS: "tries per request, the first included (1 to 20): a request "
    "answered 429, 5xx, or not at all this many times in a row fails its window, which "
    "resumes at its last committed page on the next sync. Raise it behind a strict rate limit",
    Env.POLYAI_WINDOW: "window size: `daily` (UTC days) or `hourly` for high-volume "
    "projects; partition keys become `2026-11-20-05:00`. Changing it on a warehouse that "
    "holds data needs a new warehouse (or schema)",
    Env.LAKE_URL: "root of the Parquet lake: a local path, `file:///path`, or an object store "
    "`s3://bucket/prefix`, `gs://`, `abfs://`, `hdfs://` (credentials in the URL are refused)",
    Env.POLYAI_QA_SAMPLE_SIZE: "conversations in each window's QA sample (0 turns the sample off)",
    Env.POLYAI_DBT_MODELS: "build the dbt project's models (the KPI tables, the marts, dbt's "
    "tests) in the sync's runs; `false` leaves them out of the code location (no KPIs; a team "
    "with a dbt project of its own), and saves a run the 5-8 s of starting dbt",
    Env.POLYAI_SAVED_SEARCHES: "`name=transcript:text` or `name=semantic:text`, separated by `;`",
    Env.POLYAI_PAGE_SIZE: "conversations per API request (1 to 1000, the API's maximum): one "
    "page is in memory at a time, so a smaller page bounds memory tighter at the cost of "
    "more requests",
    Env.POLYAI_REQUEST_DEADLINE_SECONDS: "the longest one API request may take, body "
    "included (a server that drips a byte a second is cut off and the request retried)",
    Env.POLYAI_REQUEST_BUDGET_SECONDS: "the longest one request may take across all its "
    "tries and the waits between them (1 to 86400): a retry that would start later is not "
    "made, and the window fails (transient: it resumes at that page on the next sync)",
    Env.POLYAI_ALLOW_INSECURE_HTTP: "allow a plain `http://` `POLYAI_BASE_URL` (and alert "
    "webhook) to a host other than loopback (refused otherwise: the key would travel "
    "unencrypted)",
    Env.POLYAI_HASH_PHONE_NUMBERS: "store `from_number` and `to_number` as "
    "`hmac-sha256:<hex>`, keyed by `POLYAI_PHONE_HASH_SALT` (the same number always hashes "
    "the same, so callers can still be counted and joined)",
    Env.POLYAI_PHONE_HASH_SALT: "the hashes' secret key, at least 16 characters; bound as "
    "`EnvVar`, never printed. Changing it changes every hash from then on",
    Env.POLYAI_REDACT_TRANSCRIPTS: "replace email addresses, payment card numbers and phone "
    "numbers in each turn's transcript text (`user_input`, `user_input_dtmf`, "
    "`agent_response`, their translations) with `[email]`, `[card]`, `[phone]`",
    Env.POLYAI_ALERT_WEBHOOK_URL: "Slack-compatible incoming webhook that failed runs, failed "
    "ERROR checks and recoveries are posted to; a secret, bound as `EnvVar`, never printed",
    Env.DAGSTER_UI_URL: "the UI's address, that alerts link runs under",
    Env.POLYAI_AUTOMATION_INTERVAL_SECONDS: "how often, under the daemon, the downstream "
    "assets' automation condition is evaluated: after only the tables of some windows were "
    "materialized (a backfill from the UI), their KPIs, lake files, QA sample and saved "
    "searches follow within about this long",
    Env.POLYAI_RETENTION_DAYS: "the nightly retention run removes windows older than this "
    "many days from every table and the lake; must be more than `POLYAI_LOOKBACK_DAYS` + 1",
}
"""What each variable means, one entry per :class:`Env` member (the configuration reference
in ``docs/`` is generated from it, with :data:`DEFAULTS` and :data:`DEFAULTS_IN_WORDS`)."""

DEFAULTS_IN_WORDS: Final[dict[str, str]] = {
    Env.POLYAI_BASE_URL: "(from `POLYAI_REGION`)",
    Env.POLYAI_REGION: "(none)",
    Env.POLYAI_API_KEY: "(required for `sync`)",
    Env.POLYAI_ACCOUNT_ID: "(required for `sync`)",
    Env.POLYAI_PROJECT_ID: "(required for `sync`)",
    Env.POLYAI_CHANNEL_MAP: "`"
    + ";".join(f"{channel}={','.join(labels)}" for channel, labels in CHANNEL_LABELS.items())
    + "`",
    Env.WAREHOUSE_MAX_MEMORY_MB: "half the machine's memory",
    Env.POLYAI_SYNC_WORKERS: "the machine's cores",
    Env.POLYAI_SAVED_SEARCHES: "(none)",
    Env.POLYAI_HASH_PHONE_NUMBERS: "`false`",
    Env.POLYAI_PHONE_HASH_SALT: "(required when hashing)",
    Env.POLYAI_REDACT_TRANSCRIPTS: "`false`",
    Env.POLYAI_ALERT_WEBHOOK_URL: "(none: no alerts)",
    Env.POLYAI_RETENTION_DAYS: "`0` (off)",
}
"""A default that a literal would not explain: what an empty one means, or one computed on
the machine at hand (the number of cores). The reference shows this instead of the value."""

DAGSTER_VARIABLES: Final[dict[str, tuple[str, str]]] = {
    "DAGSTER_HOME": (
        "`.polyai-sync/dagster_home`",
        "Dagster instance that records runs; read by Dagster itself, and by the CLI "
        "(`pipelines/instance.py`), which uses this folder when it is unset and exports it to "
        "the processes it starts (`polyai-sync ui` uses the same)",
    ),
}
"""Variables Dagster reads that a deployment sets, documented beside polyai-sync's own: not
:class:`Env` members, since :class:`core.config.Settings` does not read them. Each is its
default in words and what it means."""
