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
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from core.api_contract import ENVIRONMENTS, QUERY_TYPES, REGION_BASE_URLS
from core.errors import PolyAISyncError
from core.windows import GRANULARITIES, Scope, scopes_for

LOCAL_DIR: Final = Path(".polyai-sync")
"""Project-local folder (git-ignored) for the default warehouse and Dagster instance."""

DEFAULTS: Final[dict[str, str]] = {
    "POLYAI_ENVIRONMENTS": "live",
    "POLYAI_CHANNELS": "voice,chat",
    "POLYAI_SYNC_START": "2025-01-01",
    "WAREHOUSE_URL": f"duckdb:///{LOCAL_DIR / 'warehouse.duckdb'}",
    "WAREHOUSE_SCHEMA": "polyai",
    "POLYAI_QUARANTINE_MAX_FRACTION": "0.01",
    "POLYAI_LOOKBACK_DAYS": "2",
    "POLYAI_SCHEDULE_HOUR": "2",
    "POLYAI_WINDOWS_PER_RUN": "7",
    "POLYAI_WINDOW": "daily",
    "LAKE_URL": str(LOCAL_DIR / "lake"),
    "POLYAI_QA_SAMPLE_SIZE": "20",
    "POLYAI_SAVED_SEARCHES": "",
    "POLYAI_PAGE_SIZE": "1000",
    "POLYAI_REQUEST_DEADLINE_SECONDS": "300",
    "POLYAI_ALLOW_INSECURE_HTTP": "false",
}

SOURCE_VARIABLES: Final = (
    "POLYAI_BASE_URL or POLYAI_REGION",
    "POLYAI_API_KEY",
    "POLYAI_ACCOUNT_ID",
    "POLYAI_PROJECT_ID",
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHANNEL = re.compile(r"^[A-Za-z0-9_-]+$")


class ConfigError(PolyAISyncError, ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class SavedSearch:
    """A named transcript or semantic query run over every window."""

    name: str
    query_type: str
    query: str


def parse_saved_searches(value: str) -> tuple[SavedSearch, ...]:
    """``name=type:query`` entries separated by ``;``, e.g.
    ``cancel=transcript:cancel;human=semantic:talk to a human``."""
    searches = []
    for entry in filter(None, (part.strip() for part in value.split(";"))):
        name, eq, rest = entry.partition("=")
        query_type, colon, query = rest.partition(":")
        if not (eq and colon and name.strip() and query.strip()):
            raise ConfigError(
                f"POLYAI_SAVED_SEARCHES: {entry!r} is not name=transcript:text or "
                "name=semantic:text"
            )
        if query_type.strip() not in QUERY_TYPES:
            raise ConfigError(
                f"POLYAI_SAVED_SEARCHES: {entry!r} has type {query_type.strip()!r}; "
                f"expected one of {', '.join(QUERY_TYPES)}"
            )
        searches.append(SavedSearch(name.strip(), query_type.strip(), query.strip()))
    names = [s.name for s in searches]
    if len(set(names)) != len(names):
        raise ConfigError(f"POLYAI_SAVED_SEARCHES: names must be unique, got {names}")
    return tuple(searches)


@dataclass(frozen=True)
class Settings:
    base_url: str | None
    api_key: str | None = field(repr=False)
    account_id: str | None
    project_id: str | None
    environments: tuple[str, ...]
    channels: tuple[str, ...]
    sync_start: date
    warehouse_url: str
    warehouse_schema: str
    quarantine_max_fraction: float = 0.01
    lookback_days: int = 2
    schedule_hour: int = 2
    windows_per_run: int = 7
    granularity: str = "daily"
    lake_url: str = str(LOCAL_DIR / "lake")
    qa_sample_size: int = 20
    saved_searches: tuple[SavedSearch, ...] = ()
    page_size: int = 1000
    request_deadline_seconds: int = 300
    warehouse_max_memory_mb: int | None = None
    """DuckDB only: the most memory one transaction may take (None: half the machine's)."""
    allow_insecure_http: bool = False
    hash_phone_numbers: bool = False
    phone_hash_salt: str = field(default="", repr=False)
    """Secret: keys the phone-number hashes. Never printed."""
    redact_transcripts: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate every setting; raise :class:`ConfigError` naming a bad one."""

        def get(name: str) -> str:
            value = environ.get(name, "").strip()
            return value or DEFAULTS.get(name, "")

        environments = _split_list("POLYAI_ENVIRONMENTS", get("POLYAI_ENVIRONMENTS"))
        for env in environments:
            if env not in ENVIRONMENTS:
                raise ConfigError(
                    f"POLYAI_ENVIRONMENTS: unknown environment {env!r}; "
                    f"expected a comma-separated subset of {', '.join(ENVIRONMENTS)}"
                )
        channels = _split_list("POLYAI_CHANNELS", get("POLYAI_CHANNELS"))
        for channel in channels:
            if not _CHANNEL.match(channel):
                raise ConfigError(
                    f"POLYAI_CHANNELS: channel {channel!r} may hold only letters, digits, "
                    "'-' and '_'"
                )
        try:
            sync_start = date.fromisoformat(get("POLYAI_SYNC_START"))
        except ValueError:
            raise ConfigError(
                f"POLYAI_SYNC_START: {get('POLYAI_SYNC_START')!r} is not a date (YYYY-MM-DD)"
            ) from None
        region = get("POLYAI_REGION")
        if region and region not in REGION_BASE_URLS:
            raise ConfigError(
                f"POLYAI_REGION: unknown region {region!r}; expected one of "
                f"{', '.join(REGION_BASE_URLS)} (or set POLYAI_BASE_URL)"
            )
        base_url = get("POLYAI_BASE_URL") or REGION_BASE_URLS.get(region) or None
        if base_url and not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"POLYAI_BASE_URL: {display_url(base_url)!r} is not an http(s) URL")
        allow_insecure_http = _bool_setting(get, "POLYAI_ALLOW_INSECURE_HTTP")
        check_source(
            base_url,
            get("POLYAI_API_KEY"),
            get("POLYAI_ACCOUNT_ID"),
            get("POLYAI_PROJECT_ID"),
            allow_insecure_http,
        )
        warehouse_url = get("WAREHOUSE_URL")
        if not warehouse_url.startswith(WAREHOUSE_SCHEMES):
            raise ConfigError(
                f"WAREHOUSE_URL: {display_url(warehouse_url)!r} is not supported; use "
                "duckdb:///path/to/file.duckdb or postgresql://user@host:port/database"
            )
        schema = get("WAREHOUSE_SCHEMA")
        if not _IDENTIFIER.match(schema):
            raise ConfigError(f"WAREHOUSE_SCHEMA: {schema!r} is not a valid SQL identifier")
        try:
            quarantine_max_fraction = float(get("POLYAI_QUARANTINE_MAX_FRACTION"))
        except ValueError:
            quarantine_max_fraction = -1.0
        if not 0.0 <= quarantine_max_fraction <= 1.0:
            raise ConfigError(
                "POLYAI_QUARANTINE_MAX_FRACTION: "
                f"{get('POLYAI_QUARANTINE_MAX_FRACTION')!r} is not a number between 0 and 1"
            )
        lookback_days = _int_setting(get, "POLYAI_LOOKBACK_DAYS", 0, 366)
        schedule_hour = _int_setting(get, "POLYAI_SCHEDULE_HOUR", 0, 23)
        windows_per_run = _int_setting(get, "POLYAI_WINDOWS_PER_RUN", 1, 1000)
        hash_phone_numbers = _bool_setting(get, "POLYAI_HASH_PHONE_NUMBERS")
        salt = environ.get("POLYAI_PHONE_HASH_SALT", "")
        if hash_phone_numbers and len(salt) < MIN_SALT_LENGTH:
            raise ConfigError(
                "POLYAI_HASH_PHONE_NUMBERS is on: set POLYAI_PHONE_HASH_SALT to a secret of at "
                f"least {MIN_SALT_LENGTH} characters (it is "
                f"{'missing' if not salt else f'{len(salt)} characters'})"
            )
        granularity = get("POLYAI_WINDOW")
        if granularity not in GRANULARITIES:
            raise ConfigError(
                f"POLYAI_WINDOW: {granularity!r} is not one of {', '.join(GRANULARITIES)}"
            )
        return cls(
            base_url=base_url,
            api_key=get("POLYAI_API_KEY") or None,
            account_id=get("POLYAI_ACCOUNT_ID") or None,
            project_id=get("POLYAI_PROJECT_ID") or None,
            environments=environments,
            channels=channels,
            sync_start=sync_start,
            warehouse_url=warehouse_url,
            warehouse_schema=schema,
            quarantine_max_fraction=quarantine_max_fraction,
            lookback_days=lookback_days,
            schedule_hour=schedule_hour,
            windows_per_run=windows_per_run,
            granularity=granularity,
            lake_url=_lake_folder(get("LAKE_URL")),
            qa_sample_size=_int_setting(get, "POLYAI_QA_SAMPLE_SIZE", 0, 1000),
            saved_searches=parse_saved_searches(get("POLYAI_SAVED_SEARCHES")),
            page_size=_int_setting(get, "POLYAI_PAGE_SIZE", 1, 1000),
            request_deadline_seconds=_int_setting(get, "POLYAI_REQUEST_DEADLINE_SECONDS", 1, 3600),
            warehouse_max_memory_mb=(
                _int_setting(get, "WAREHOUSE_MAX_MEMORY_MB", MIN_MAX_MEMORY_MB, 1 << 24)
                if get("WAREHOUSE_MAX_MEMORY_MB")
                else None
            ),
            allow_insecure_http=allow_insecure_http,
            hash_phone_numbers=hash_phone_numbers,
            phone_hash_salt=salt if hash_phone_numbers else "",
            redact_transcripts=_bool_setting(get, "POLYAI_REDACT_TRANSCRIPTS"),
        )

    @property
    def scopes(self) -> list[Scope]:
        return scopes_for(self.environments, self.channels)

    def require_source(self) -> None:
        """Fail at once, naming every missing variable, if the API cannot be reached."""
        values = {
            "POLYAI_BASE_URL or POLYAI_REGION": self.base_url,
            "POLYAI_API_KEY": self.api_key,
            "POLYAI_ACCOUNT_ID": self.account_id,
            "POLYAI_PROJECT_ID": self.project_id,
        }
        missing = [name for name in SOURCE_VARIABLES if not values[name]]
        if missing:
            raise ConfigError(
                f"missing configuration: set {', '.join(missing)} "
                "(see the Configuration section of README.md)"
            )


def _lake_folder(value: str) -> str:
    """LAKE_URL as a local folder (``file://`` allowed); any other scheme is refused rather
    than taken for a relative folder named ``s3:``."""
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if scheme is None:
        return value
    if scheme.group(1).lower() == "file":
        return urlsplit(value).path
    raise ConfigError(
        f"LAKE_URL: {display_url(value)!r}: the lake is written to a local folder; "
        f"{scheme.group(1)}:// is not supported (give a path such as /data/lake)"
    )


def _int_setting(get: Callable[[str], str], name: str, lo: int, hi: int) -> int:
    value = get(name)
    try:
        number = int(value)
    except ValueError:
        number = lo - 1
    if not lo <= number <= hi:
        raise ConfigError(f"{name}: {value!r} is not a whole number from {lo} to {hi}")
    return number


MIN_MAX_MEMORY_MB = 256
"""The smallest WAREHOUSE_MAX_MEMORY_MB: DuckDB's own cap (128 MB) and room for a page."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
MIN_SALT_LENGTH = 16


def _bool_setting(get: Callable[[str], str], name: str) -> bool:
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


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_source(
    base_url: str | None,
    api_key: str | None,
    account_id: str | None,
    project_id: str | None,
    allow_insecure_http: bool = False,
) -> None:
    """Refuse source settings that would leak the key or send it elsewhere, naming the
    variable and never echoing a secret: credentials in the base URL, a key with whitespace
    or control characters (it would travel in a header, and errors would show it), ids that
    would change the request's path or query, plain ``http://`` to another machine."""
    if base_url:
        parts = urlsplit(base_url)
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"POLYAI_BASE_URL: {display_url(base_url)!r} carries credentials; the API "
                "authenticates with POLYAI_API_KEY alone: remove the 'user:password@' part"
            )
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK and not allow_insecure_http:
            raise ConfigError(
                f"POLYAI_BASE_URL: {base_url!r} is plain http to another machine: the API key "
                "would travel unencrypted. Use https://, or set POLYAI_ALLOW_INSECURE_HTTP=true "
                "if the network is trusted"
            )
    if api_key and not _KEY_CHARACTERS.fullmatch(api_key):
        raise ConfigError(
            "POLYAI_API_KEY holds whitespace or a control character (a newline from the file "
            "it was read from?); a key is printable characters only (the key is not shown)"
        )
    for name, value in (("POLYAI_ACCOUNT_ID", account_id), ("POLYAI_PROJECT_ID", project_id)):
        if value and (not _ID.fullmatch(value) or ".." in value):
            raise ConfigError(
                f"{name}: {value[:80]!r} is not an id (letters, digits and _ . : - only, as "
                "in the API's URL path)"
            )


def display_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:  # not a URL a password could be read from
        return url
    if password is None:
        return url
    credentials, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{credentials.split(':', 1)[0]}:***@{host}"))


def duckdb_path(warehouse_url: str) -> Path:
    """The file a ``duckdb:///path`` URL points at (relative paths stay relative)."""
    return Path(warehouse_url.removeprefix("duckdb:///"))
