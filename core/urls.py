"""What a URL setting may hold: the source's address and ids, the lake's location, the alert
webhook. Each check names the variable and never echoes a secret."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from core.env import Env
from core.errors import PolyAISyncError


class ConfigError(PolyAISyncError, ValueError):
    """A setting is missing or malformed; the message names the variable."""


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")

LAKE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs")
"""Object stores the lake may be on, as pyarrow's filesystems (``FileSystem.from_uri``) name
them; credentials come from each one's usual environment variables and files."""
_LAKE_OPTIONS = ("region", "endpoint_override", "scheme", "force_virtual_addressing")
"""URL query options pyarrow takes that are not credentials."""


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
                f"{Env.POLYAI_BASE_URL}: {display_url(base_url)!r} carries credentials; the API "
                f"authenticates with {Env.POLYAI_API_KEY} alone: remove the 'user:password@' part"
            )
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK and not allow_insecure_http:
            raise ConfigError(
                f"{Env.POLYAI_BASE_URL}: {base_url!r} is plain http to another machine: the API "
                "key would travel unencrypted. Use https://, or set "
                f"{Env.POLYAI_ALLOW_INSECURE_HTTP}=true if the network is trusted"
            )
    if api_key and not _KEY_CHARACTERS.fullmatch(api_key):
        raise ConfigError(
            f"{Env.POLYAI_API_KEY} holds whitespace or a control character (a newline from the "
            "file it was read from?); a key is printable characters only (the key is not shown)"
        )
    for name, value in ((Env.POLYAI_ACCOUNT_ID, account_id), (Env.POLYAI_PROJECT_ID, project_id)):
        if value and (not _ID.fullmatch(value) or ".." in value):
            raise ConfigError(
                f"{name}: {value[:80]!r} is not an id (letters, digits and _ . : - only, as "
                "in the API's URL path)"
            )


def lake_url(value: str) -> str:
    """LAKE_URL as the lake takes it: a local folder (``file://`` allowed, returned as the
    path), or the URL of an object store (:data:`LAKE_SCHEMES`) that carries no credentials."""
    scheme = _SCHEME.match(value)
    if scheme is None:
        return value
    name = scheme.group(1).lower()
    if name == "file":
        return urlsplit(value).path
    if name not in LAKE_SCHEMES:
        raise ConfigError(
            f"{Env.LAKE_URL}: {display_url(value)!r}: {name}:// is not supported; give a local "
            f"folder (/data/lake) or a URL of {', '.join(s + '://' for s in LAKE_SCHEMES)}"
        )
    parts = urlsplit(value)
    secrets = [key for key, _ in parse_qsl(parts.query) if key not in _LAKE_OPTIONS]
    if parts.password is not None or secrets:
        raise ConfigError(
            f"{Env.LAKE_URL}: {display_url(value).split('?')[0]!r} carries credentials "
            f"({'a password' if parts.password is not None else ', '.join(secrets)}); give them "
            "the store's usual way (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
            "~/.aws/credentials, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY), "
            "not in the URL"
        )
    if not (parts.netloc or parts.path.strip("/")):
        raise ConfigError(f"{Env.LAKE_URL}: {value!r} names no bucket")
    return value


def webhook_url(value: str, allow_insecure_http: bool) -> str:
    """POLYAI_ALERT_WEBHOOK_URL checked without ever showing it (a Slack webhook's path is
    its secret): empty (no alerts), or https (plain http to this machine only, unless the
    network is trusted)."""
    if not value:
        return value
    name = Env.POLYAI_ALERT_WEBHOOK_URL
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} is not an http(s) URL (the value is secret and not shown)")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK and not allow_insecure_http:
        raise ConfigError(
            f"{name} is plain http to another machine (the value is secret and not shown): use "
            f"https://, or set {Env.POLYAI_ALLOW_INSECURE_HTTP}=true if the network is trusted"
        )
    return value


def ui_url(value: str) -> str:
    """DAGSTER_UI_URL, the base that alerts link runs under, without a trailing slash."""
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{Env.DAGSTER_UI_URL}: {value!r} is not an http(s) URL")
    return value.rstrip("/")


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
