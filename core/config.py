"""Configuration, read from environment variables in one place.

Every setting has a documented default except the source's address, identity and secret
(``POLYAI_BASE_URL`` or ``POLYAI_REGION``, ``POLYAI_API_KEY``, ``POLYAI_ACCOUNT_ID``,
``POLYAI_PROJECT_ID``), which a real sync must be given; :meth:`Settings.require_source` names
whichever are missing. The API key is kept out of ``repr`` so that it never reaches a log line
by accident.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from core.api_contract import ENVIRONMENTS, QUERY_TYPES, REGION_BASE_URLS
from core.channels import ChannelMap, ChannelMapError
from core.env import DEFAULTS, SOURCE_VARIABLES, Env
from core.urls import ConfigError, check_source, display_url, lake_url, ui_url, webhook_url
from core.windows import GRANULARITIES, Scope, scopes_for

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHANNEL = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class SavedSearch:
    """A named transcript or semantic query run over every window."""

    name: str
    query_type: str
    query: str


def parse_saved_searches(value: str) -> tuple[SavedSearch, ...]:
    """``name=type:query`` entries separated by ``;``, e.g.
    ``cancel=transcript:cancel;human=semantic:talk to a human``."""
    setting = Env.POLYAI_SAVED_SEARCHES
    searches = []
    for entry in filter(None, (part.strip() for part in value.split(";"))):
        name, eq, rest = entry.partition("=")
        query_type, colon, query = rest.partition(":")
        if not (eq and colon and name.strip() and query.strip()):
            raise ConfigError(
                f"{setting}: {entry!r} is not name=transcript:text or name=semantic:text"
            )
        if query_type.strip() not in QUERY_TYPES:
            raise ConfigError(
                f"{setting}: {entry!r} has type {query_type.strip()!r}; "
                f"expected one of {', '.join(QUERY_TYPES)}"
            )
        searches.append(SavedSearch(name.strip(), query_type.strip(), query.strip()))
    names = [s.name for s in searches]
    if len(set(names)) != len(names):
        raise ConfigError(f"{setting}: names must be unique, got {names}")
    return tuple(searches)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting, validated. No field has a default of its own (:data:`DEFAULTS` holds
    them): build one with :meth:`from_env`."""

    base_url: str | None
    api_key: str | None = field(repr=False)
    account_id: str | None
    project_id: str | None
    environments: tuple[str, ...]
    channels: tuple[str, ...]
    channel_map: ChannelMap
    """Each channel's response labels and the filter's spelling (POLYAI_CHANNEL_MAP,
    POLYAI_CHANNEL_FILTER)."""
    sync_start: date
    warehouse_url: str
    warehouse_schema: str
    quarantine_max_fraction: float
    lookback_days: int
    schedule_hour: int
    windows_per_run: int
    sync_workers: int
    """Processes beside the writer that fetch and normalize pages (0: none; a one-core
    machine uses none whatever this says)."""
    max_in_flight: int
    """Requests a sync has in flight at once, at most (one page a window)."""
    max_attempts: int
    """Tries per request, the first included."""
    granularity: str
    lake_url: str
    qa_sample_size: int
    saved_searches: tuple[SavedSearch, ...]
    page_size: int
    request_deadline_seconds: int
    request_budget_seconds: int
    """The longest one request may take across its tries and the waits between them."""
    warehouse_max_memory_mb: int | None
    """DuckDB only: the most memory one transaction may take (None: half the machine's)."""
    allow_insecure_http: bool
    hash_phone_numbers: bool
    phone_hash_salt: str = field(repr=False)
    """Secret: keys the phone-number hashes. Never printed."""
    redact_transcripts: bool
    alert_webhook_url: str = field(repr=False)
    """Secret: where failure alerts are posted (empty: none). Never printed."""
    dagster_ui_url: str
    """The UI's address, that alerts link runs under."""
    retention_days: int
    """Windows older than this many days are removed by the nightly retention run (0: off)."""
    automation_interval_seconds: int
    """How often the daemon evaluates the downstream assets' automation condition."""
    dbt_models: bool
    """Whether the code location builds the dbt project's models (the KPIs among them)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate every setting; raise :class:`ConfigError` naming a bad one.

        Settings are checked in the order below, so of several bad ones the first is named.
        """
        get = _reader(environ)
        environments = _environments(get)
        channels = _channels(get)
        channel_map = _channel_map(get)
        sync_start = _sync_start(get)
        base_url = _base_url(get)
        allow_insecure_http = _bool_setting(get, Env.POLYAI_ALLOW_INSECURE_HTTP)
        check_source(
            base_url,
            get(Env.POLYAI_API_KEY),
            get(Env.POLYAI_ACCOUNT_ID),
            get(Env.POLYAI_PROJECT_ID),
            allow_insecure_http,
        )
        warehouse_url = _warehouse_url(get)
        warehouse_schema = _warehouse_schema(get)
        quarantine_max_fraction = _quarantine_max_fraction(get)
        lookback_days = _int_setting(get, Env.POLYAI_LOOKBACK_DAYS, 0, 366)
        schedule_hour = _int_setting(get, Env.POLYAI_SCHEDULE_HOUR, 0, 23)
        windows_per_run = _int_setting(get, Env.POLYAI_WINDOWS_PER_RUN, 1, 1000)
        hash_phone_numbers = _bool_setting(get, Env.POLYAI_HASH_PHONE_NUMBERS)
        phone_hash_salt = _phone_hash_salt(environ, hash_phone_numbers)
        return cls(
            base_url=base_url,
            api_key=get(Env.POLYAI_API_KEY) or None,
            account_id=get(Env.POLYAI_ACCOUNT_ID) or None,
            project_id=get(Env.POLYAI_PROJECT_ID) or None,
            environments=environments,
            channels=channels,
            channel_map=channel_map,
            sync_start=sync_start,
            warehouse_url=warehouse_url,
            warehouse_schema=warehouse_schema,
            quarantine_max_fraction=quarantine_max_fraction,
            lookback_days=lookback_days,
            schedule_hour=schedule_hour,
            windows_per_run=windows_per_run,
            sync_workers=_int_setting(get, Env.POLYAI_SYNC_WORKERS, 0, MAX_WORKERS),
            max_in_flight=_int_setting(get, Env.POLYAI_MAX_IN_FLIGHT, 1, MAX_IN_FLIGHT),
            **_requests(get),
            granularity=_granularity(get),
            lake_url=lake_url(get(Env.LAKE_URL)),
            qa_sample_size=_int_setting(get, Env.POLYAI_QA_SAMPLE_SIZE, 0, 1000),
            saved_searches=parse_saved_searches(get(Env.POLYAI_SAVED_SEARCHES)),
            page_size=_int_setting(get, Env.POLYAI_PAGE_SIZE, 1, 1000),
            warehouse_max_memory_mb=_warehouse_max_memory_mb(get),
            allow_insecure_http=allow_insecure_http,
            hash_phone_numbers=hash_phone_numbers,
            phone_hash_salt=phone_hash_salt,
            redact_transcripts=_bool_setting(get, Env.POLYAI_REDACT_TRANSCRIPTS),
            dbt_models=_bool_setting(get, Env.POLYAI_DBT_MODELS),
            **_operations(environ, get, allow_insecure_http, lookback_days),
        )

    @property
    def scopes(self) -> list[Scope]:
        return scopes_for(self.environments, self.channels)

    def require_source(self) -> None:
        """Fail at once, naming every missing variable, if the API cannot be reached."""
        values = (self.base_url, self.api_key, self.account_id, self.project_id)
        missing = [name for name, value in zip(SOURCE_VARIABLES, values, strict=True) if not value]
        if missing:
            raise ConfigError(
                f"missing configuration: set {', '.join(missing)} "
                "(see docs/reference/configuration.md)"
            )


Getter = Callable[[str], str]
"""``get(name)``: a variable's value, trimmed, or its default when unset or blank."""


def _reader(environ: Mapping[str, str]) -> Getter:
    def get(name: str) -> str:
        value = environ.get(name, "").strip()
        return value or DEFAULTS.get(name, "")

    return get


def _environments(get: Getter) -> tuple[str, ...]:
    name = Env.POLYAI_ENVIRONMENTS
    environments = _split_list(name, get(name))
    for env in environments:
        if env not in ENVIRONMENTS:
            raise ConfigError(
                f"{name}: unknown environment {env!r}; "
                f"expected a comma-separated subset of {', '.join(ENVIRONMENTS)}"
            )
    return environments


def _channels(get: Getter) -> tuple[str, ...]:
    name = Env.POLYAI_CHANNELS
    channels = _split_list(name, get(name))
    for channel in channels:
        if not _CHANNEL.match(channel):
            raise ConfigError(
                f"{name}: channel {channel!r} may hold only letters, digits, '-' and '_'"
            )
    return channels


def _channel_map(get: Getter) -> ChannelMap:
    try:
        return ChannelMap.parse(get(Env.POLYAI_CHANNEL_MAP), get(Env.POLYAI_CHANNEL_FILTER))
    except ChannelMapError as exc:
        raise ConfigError(str(exc)) from None


def _sync_start(get: Getter) -> date:
    name = Env.POLYAI_SYNC_START
    try:
        return date.fromisoformat(get(name))
    except ValueError:
        raise ConfigError(f"{name}: {get(name)!r} is not a date (YYYY-MM-DD)") from None


def _base_url(get: Getter) -> str | None:
    """``POLYAI_BASE_URL``, else the URL of ``POLYAI_REGION``, else None."""
    region = get(Env.POLYAI_REGION)
    if region and region not in REGION_BASE_URLS:
        raise ConfigError(
            f"{Env.POLYAI_REGION}: unknown region {region!r}; expected one of "
            f"{', '.join(REGION_BASE_URLS)} (or set {Env.POLYAI_BASE_URL})"
        )
    base_url = get(Env.POLYAI_BASE_URL) or REGION_BASE_URLS.get(region) or None
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{Env.POLYAI_BASE_URL}: {display_url(base_url)!r} is not an http(s) URL")
    return base_url


def _warehouse_url(get: Getter) -> str:
    name = Env.WAREHOUSE_URL
    warehouse_url = get(name)
    if not warehouse_url.startswith(WAREHOUSE_SCHEMES):
        raise ConfigError(
            f"{name}: {display_url(warehouse_url)!r} is not supported; use "
            "duckdb:///path/to/file.duckdb or postgresql://user@host:port/database"
        )
    return warehouse_url


def _warehouse_schema(get: Getter) -> str:
    name = Env.WAREHOUSE_SCHEMA
    schema = get(name)
    if not _IDENTIFIER.match(schema):
        raise ConfigError(f"{name}: {schema!r} is not a valid SQL identifier")
    return schema


def _quarantine_max_fraction(get: Getter) -> float:
    name = Env.POLYAI_QUARANTINE_MAX_FRACTION
    try:
        fraction = float(get(name))
    except ValueError:
        fraction = -1.0
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"{name}: {get(name)!r} is not a number between 0 and 1")
    return fraction


def _phone_hash_salt(environ: Mapping[str, str], hash_phone_numbers: bool) -> str:
    """The salt when hashing is on (taken as set, untrimmed: it is a secret), else empty."""
    salt = environ.get(Env.POLYAI_PHONE_HASH_SALT, "")
    if hash_phone_numbers and len(salt) < MIN_SALT_LENGTH:
        raise ConfigError(
            f"{Env.POLYAI_HASH_PHONE_NUMBERS} is on: set {Env.POLYAI_PHONE_HASH_SALT} to a "
            f"secret of at least {MIN_SALT_LENGTH} characters (it is "
            f"{'missing' if not salt else f'{len(salt)} characters'})"
        )
    return salt if hash_phone_numbers else ""


def _granularity(get: Getter) -> str:
    name = Env.POLYAI_WINDOW
    granularity = get(name)
    if granularity not in GRANULARITIES:
        raise ConfigError(f"{name}: {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    return granularity


def _warehouse_max_memory_mb(get: Getter) -> int | None:
    name = Env.WAREHOUSE_MAX_MEMORY_MB
    if not get(name):
        return None
    return _int_setting(get, name, MIN_MAX_MEMORY_MB, 1 << 24)


def _operations(
    environ: Mapping[str, str], get: Getter, allow_insecure_http: bool, lookback_days: int
) -> dict[str, object]:
    """The settings of running it for a team: alerts, the UI's address, retention."""
    retention_days = _int_setting(get, Env.POLYAI_RETENTION_DAYS, 0, MAX_RETENTION_DAYS)
    if retention_days and retention_days <= lookback_days + 1:
        raise ConfigError(
            f"{Env.POLYAI_RETENTION_DAYS}: {retention_days} would remove windows the nightly "
            f"run still re-syncs ({Env.POLYAI_LOOKBACK_DAYS} is {lookback_days}); give more "
            f"than {lookback_days + 1} days, or 0 for no retention"
        )
    return {
        # Taken as set, untrimmed (it is a secret), like the salt.
        "alert_webhook_url": webhook_url(
            environ.get(Env.POLYAI_ALERT_WEBHOOK_URL, ""), allow_insecure_http
        ),
        "dagster_ui_url": ui_url(get(Env.DAGSTER_UI_URL)),
        "retention_days": retention_days,
        "automation_interval_seconds": _int_setting(
            get, Env.POLYAI_AUTOMATION_INTERVAL_SECONDS, 1, 86400
        ),
    }


def _requests(get: Getter) -> dict[str, int]:
    """Tries per request, and how long one request may take: one try, and all of them."""
    return {
        "max_attempts": _int_setting(get, Env.POLYAI_MAX_ATTEMPTS, 1, 20),
        "request_deadline_seconds": _int_setting(get, Env.POLYAI_REQUEST_DEADLINE_SECONDS, 1, 3600),
        "request_budget_seconds": _int_setting(get, Env.POLYAI_REQUEST_BUDGET_SECONDS, 1, 86400),
    }


def _int_setting(get: Getter, name: str, lo: int, hi: int) -> int:
    value = get(name)
    try:
        number = int(value)
    except ValueError:
        number = lo - 1
    if not lo <= number <= hi:
        raise ConfigError(f"{name}: {value!r} is not a whole number from {lo} to {hi}")
    return number


MAX_WORKERS = 256
MAX_IN_FLIGHT = 64
"""The highest in-flight maximum ``POLYAI_MAX_IN_FLIGHT`` may ask for."""
MAX_RETENTION_DAYS = 36500
MIN_MAX_MEMORY_MB = 256
"""The smallest WAREHOUSE_MAX_MEMORY_MB: DuckDB's own cap (128 MB) and room for a page."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
MIN_SALT_LENGTH = 16


def _bool_setting(get: Getter, name: str) -> bool:
    value = get(name).lower()
    if value not in _TRUE + _FALSE:
        raise ConfigError(f"{name}: {get(name)!r} is not true or false")
    return value in _TRUE


def _split_list(name: str, value: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not items:
        raise ConfigError(f"{name}: expected a comma-separated list, got {value!r}")
    return items


WAREHOUSE_SCHEMES = ("duckdb:///", "postgresql://", "postgres://", "postgresql+psycopg://")


def duckdb_path(warehouse_url: str) -> Path:
    """The file a ``duckdb:///path`` URL points at (relative paths stay relative)."""
    return Path(warehouse_url.removeprefix("duckdb:///"))
