"""What the code location declares: the asset graph reads well and carries its policies."""

import pytest
from dagster import BackfillPolicy

from assets.checks import CHECKS
from assets.keys import POOL
from core import schema
from core.config import Settings
from pipelines.definitions import FRESHNESS, build_definitions

TABLES = ("conversations", "turns", "turn_latency", "turn_genai")
KPI_TABLES = ("conversation_kpis", "latency_kpis", "genai_kpis")


def test_every_table_asset_declares_columns_owner_group_kinds_and_freshness() -> None:
    defs = build_definitions(Settings.from_env({"POLYAI_WINDOWS_PER_RUN": "5"}))
    specs = {spec.key.path[-1]: spec for spec in defs.resolve_all_asset_specs()}
    assert set(specs) == set(TABLES) | set(KPI_TABLES) | {"lake", "qa_samples"}
    lake = specs.pop("lake")
    assert lake.kinds == {"parquet"} and lake.freshness_policy == FRESHNESS
    qa = specs.pop("qa_samples")
    assert qa.group_name == "polyai_analytics" and "dagster/column_schema" in qa.metadata
    for name, spec in specs.items():
        columns = spec.metadata["dagster/column_schema"].columns
        assert [c.name for c in columns] == [c.name for c in schema.metadata.tables[name].columns]
        assert spec.owners == ["team:data-platform"]
        assert spec.group_name == ("polyai" if name in TABLES else "polyai_analytics")
        assert "duckdb" in spec.kinds
        assert spec.description
        assert spec.freshness_policy == FRESHNESS

    for name in KPI_TABLES:  # downstream of the tables they are computed from
        assert {dep.asset_key.path[-1] for dep in specs[name].deps} <= set(TABLES)
    (sync,) = {defs.resolve_assets_def(spec.key) for spec in specs.values()}
    assert sync.backfill_policy == BackfillPolicy.multi_run(max_partitions_per_run=5)
    assert sync.op.pool == POOL
    checks = {key.name for key in sync.check_keys}
    assert checks == {check.name for check in CHECKS}


def test_the_page_size_setting_reaches_the_client() -> None:
    from core.config import Settings
    from pipelines.definitions import build_definitions

    assert Settings.from_env({}).page_size == 1000  # the API's maximum
    defs = build_definitions(Settings.from_env({"POLYAI_PAGE_SIZE": "250"}))
    assert defs.resources["polyai"].page_size == 250


def test_a_warehouse_password_reaches_neither_the_resources_nor_an_error() -> None:
    from core.config import ConfigError, Settings, display_url

    url = "postgresql://sync:pw-7f3a@127.0.0.1:5/wh"
    defs = build_definitions(Settings.from_env({"WAREHOUSE_URL": url}))
    shown = repr(defs.resources) + str(defs.resources)
    assert "PostgresWarehouse" in shown and "pw-7f3a" not in shown
    assert display_url(url) == "postgresql://sync:***@127.0.0.1:5/wh"
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"WAREHOUSE_URL": "mysql://sync:pw-7f3a@127.0.0.1/wh"})
    assert "mysql://sync:***@127.0.0.1/wh" in str(refused.value)
    assert "pw-7f3a" not in str(refused.value)


def test_the_phone_hash_salt_is_bound_by_name_never_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    salt = "salt-never-shown-6d2b"
    monkeypatch.setenv("POLYAI_PHONE_HASH_SALT", salt)
    settings = Settings.from_env(
        {"POLYAI_HASH_PHONE_NUMBERS": "true", "POLYAI_PHONE_HASH_SALT": salt}
    )
    resources = build_definitions(settings).resources
    assert resources["polyai"].hash_phone_numbers is True
    assert salt not in repr(resources) + str(resources)
    assert resources["polyai"].phone_hash_salt == "POLYAI_PHONE_HASH_SALT"  # the EnvVar's name
