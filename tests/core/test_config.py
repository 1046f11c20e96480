import os
from datetime import date

import pytest

from core.config import ConfigError, Settings


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.environments == ("live",)
    assert settings.channels == ("voice", "chat")
    assert settings.sync_start == date(2025, 1, 1)
    assert settings.warehouse_url == "duckdb:///.polyai-sync/warehouse.duckdb"
    assert settings.warehouse_schema == "polyai"
    assert [s.key for s in settings.scopes] == ["live.voice", "live.chat"]


def test_lists_are_trimmed_and_deduplicated() -> None:
    settings = Settings.from_env(
        {"POLYAI_ENVIRONMENTS": " live, sandbox ,live", "POLYAI_CHANNELS": "chat,,voice"}
    )
    assert settings.environments == ("live", "sandbox")
    assert settings.channels == ("chat", "voice")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POLYAI_ENVIRONMENTS", "production"),
        ("POLYAI_CHANNELS", "voice|chat"),
        ("POLYAI_SYNC_START", "yesterday"),
        ("WAREHOUSE_URL", "sqlite:///x.db"),
        ("WAREHOUSE_SCHEMA", "drop table;"),
        ("POLYAI_PAGE_SIZE", "0"),
        ("POLYAI_PAGE_SIZE", "1001"),
        ("WAREHOUSE_MAX_MEMORY_MB", "255"),
        ("WAREHOUSE_MAX_MEMORY_MB", "4GB"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_the_duckdb_memory_ceiling_defaults_to_the_warehouse_choosing_it() -> None:
    assert Settings.from_env({}).warehouse_max_memory_mb is None
    assert Settings.from_env({"WAREHOUSE_MAX_MEMORY_MB": "4096"}).warehouse_max_memory_mb == 4096


def test_require_source_names_every_missing_variable() -> None:
    settings = Settings.from_env({"POLYAI_BASE_URL": "https://x", "POLYAI_ACCOUNT_ID": "a"})
    with pytest.raises(ConfigError) as excinfo:
        settings.require_source()
    message = str(excinfo.value)
    assert "POLYAI_API_KEY" in message and "POLYAI_PROJECT_ID" in message
    assert "POLYAI_REGION" not in message


def test_api_key_is_not_in_repr() -> None:
    settings = Settings.from_env({"POLYAI_API_KEY": "sk-very-secret"})
    assert "sk-very-secret" not in repr(settings)


def test_region_builds_the_base_url_and_base_url_overrides_it() -> None:
    assert (
        Settings.from_env({"POLYAI_REGION": "uk-1"}).base_url
        == "https://api.uk-1.platform.polyai.app"
    )
    both = {"POLYAI_REGION": "uk-1", "POLYAI_BASE_URL": "http://127.0.0.1:8000"}
    assert Settings.from_env(both).base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("POLYAI_REGION", "mars-1"), ("POLYAI_BASE_URL", "api.polyai.app")],
)
def test_bad_source_address_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("value", ["1.5", "-0.1", "lots"])
def test_quarantine_fraction_must_be_between_0_and_1(value: str) -> None:
    with pytest.raises(ConfigError, match="POLYAI_QUARANTINE_MAX_FRACTION"):
        Settings.from_env({"POLYAI_QUARANTINE_MAX_FRACTION": value})
    assert (
        Settings.from_env({"POLYAI_QUARANTINE_MAX_FRACTION": "0.2"}).quarantine_max_fraction == 0.2
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POLYAI_LOOKBACK_DAYS", "-1"),
        ("POLYAI_LOOKBACK_DAYS", "two"),
        ("POLYAI_SCHEDULE_HOUR", "24"),
        ("POLYAI_AUTOMATION_INTERVAL_SECONDS", "0"),
        ("POLYAI_AUTOMATION_INTERVAL_SECONDS", "5s"),
    ],
)
def test_schedule_settings_are_checked(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_the_automation_interval_defaults_to_30_seconds() -> None:
    assert Settings.from_env({}).automation_interval_seconds == 30
    given = {"POLYAI_AUTOMATION_INTERVAL_SECONDS": "5"}
    assert Settings.from_env(given).automation_interval_seconds == 5


def test_qa_sample_size_is_checked_and_zero_turns_it_off() -> None:
    assert Settings.from_env({}).qa_sample_size == 20
    assert Settings.from_env({"POLYAI_QA_SAMPLE_SIZE": "0"}).qa_sample_size == 0
    with pytest.raises(ConfigError, match="POLYAI_QA_SAMPLE_SIZE"):
        Settings.from_env({"POLYAI_QA_SAMPLE_SIZE": "1001"})


@pytest.mark.parametrize("url", ["https://host/lake", "ftp://host/lake", "az://c/lake"])
def test_a_lake_url_of_another_scheme_is_refused_not_taken_for_a_folder(url: str) -> None:
    with pytest.raises(ConfigError, match=r"LAKE_URL.*not supported"):
        Settings.from_env({"LAKE_URL": url})
    assert Settings.from_env({"LAKE_URL": "file:///data/lake"}).lake_url == "/data/lake"


@pytest.mark.parametrize(
    "url", ["s3://bucket/lake", "gs://b/l", "abfs://c@acct.dfs.core.windows.net/l"]
)
def test_an_object_store_lake_url_is_taken_as_given(url: str) -> None:
    assert Settings.from_env({"LAKE_URL": url}).lake_url == url


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIA123:wJalrXUtnFEMI@bucket/lake",
        "s3://bucket/lake?access_key=AKIA123&secret_key=wJalrXUtnFEMI",
    ],
)
def test_credentials_in_the_lake_url_are_refused_and_not_echoed(url: str) -> None:
    with pytest.raises(ConfigError, match=r"LAKE_URL.*carries credentials") as raised:
        Settings.from_env({"LAKE_URL": url})
    assert "wJalrXUtnFEMI" not in str(raised.value)


def test_the_alert_webhook_is_checked_without_being_shown() -> None:
    secret = "https://hooks.example.com/services/T000/B000/XXXXsecretXXXX"
    settings = Settings.from_env({"POLYAI_ALERT_WEBHOOK_URL": secret})
    assert settings.alert_webhook_url == secret and secret not in repr(settings)
    for bad in ("hooks.example.com/XXXXsecretXXXX", "http://hooks.example.com/XXXXsecretXXXX"):
        with pytest.raises(ConfigError, match="POLYAI_ALERT_WEBHOOK_URL") as raised:
            Settings.from_env({"POLYAI_ALERT_WEBHOOK_URL": bad})
        assert "XXXXsecretXXXX" not in str(raised.value)
    assert Settings.from_env({}).alert_webhook_url == ""


def test_retention_is_off_by_default_and_must_outlast_the_lookback() -> None:
    assert Settings.from_env({}).retention_days == 0
    assert Settings.from_env({"POLYAI_RETENTION_DAYS": "30"}).retention_days == 30
    with pytest.raises(ConfigError, match="POLYAI_RETENTION_DAYS: 3 would remove windows"):
        Settings.from_env({"POLYAI_RETENTION_DAYS": "3"})  # the lookback is 2 days
    with pytest.raises(ConfigError, match="POLYAI_RETENTION_DAYS"):
        Settings.from_env({"POLYAI_RETENTION_DAYS": "-1"})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("POLYAI_BASE_URL", "https://user:hunter2-pw@api.example", "carries credentials"),
        ("POLYAI_BASE_URL", "http://api.example", "plain http to another machine"),
        ("POLYAI_API_KEY", "sk-abc\nhunter2-pw", "whitespace or a control character"),
        ("POLYAI_ACCOUNT_ID", "../../admin", "is not an id"),
        ("POLYAI_PROJECT_ID", "proj/conversations?client_env=sandbox&x=", "is not an id"),
    ],
)
def test_source_settings_that_would_leak_or_redirect_the_key_are_refused(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env({variable: value})
    assert "hunter2-pw" not in str(raised.value)
    assert variable in str(raised.value)


def test_plain_http_to_another_host_is_allowed_when_asked_for() -> None:
    env = {"POLYAI_BASE_URL": "http://api.internal", "POLYAI_ALLOW_INSECURE_HTTP": "true"}
    assert Settings.from_env(env).base_url == "http://api.internal"


@pytest.mark.parametrize("value", ["257", "-1", "many"])
def test_sync_workers_default_to_every_core_and_refuse_what_is_not_a_count(value: str) -> None:
    assert Settings.from_env({}).sync_workers == (os.cpu_count() or 1)
    assert Settings.from_env({"POLYAI_SYNC_WORKERS": "0"}).sync_workers == 0
    assert Settings.from_env({"POLYAI_SYNC_WORKERS": "3"}).sync_workers == 3
    with pytest.raises(ConfigError, match="POLYAI_SYNC_WORKERS"):
        Settings.from_env({"POLYAI_SYNC_WORKERS": value})


@pytest.mark.parametrize("value", ["0", "65", "eight"])
def test_max_in_flight_defaults_to_8_and_refuses_what_is_not_1_to_64(value: str) -> None:
    assert Settings.from_env({}).max_in_flight == 8
    assert Settings.from_env({"POLYAI_MAX_IN_FLIGHT": "16"}).max_in_flight == 16
    with pytest.raises(ConfigError, match="POLYAI_MAX_IN_FLIGHT"):
        Settings.from_env({"POLYAI_MAX_IN_FLIGHT": value})


@pytest.mark.parametrize("value", ["0", "21", "six"])
def test_max_attempts_defaults_to_6_and_refuses_what_is_not_1_to_20(value: str) -> None:
    assert Settings.from_env({}).max_attempts == 6
    assert Settings.from_env({"POLYAI_MAX_ATTEMPTS": "12"}).max_attempts == 12
    with pytest.raises(ConfigError, match="POLYAI_MAX_ATTEMPTS"):
        Settings.from_env({"POLYAI_MAX_ATTEMPTS": value})
