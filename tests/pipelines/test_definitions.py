"""What the code location declares: the asset graph reads well and carries its policies."""

import pytest
from dagster import AssetKey, BackfillPolicy

from assets.analytics import WHEN_TABLES_CHANGE
from core import schema
from core.config import Settings
from core.names import FRESHNESS_CHECK as CHECK_NAME
from core.names import POOL, SYNC_JOB, SYNC_STEP, WINDOW_CHECKS
from pipelines.definitions import FRESHNESS, build_definitions
from resources.warehouse.checks import CHECKS

TABLES = ("conversations", "turns", "turn_latency", "turn_genai")
KPI_TABLES = ("conversation_kpis", "latency_kpis", "genai_kpis")
STAGING = ("stg_conversations", "stg_turns", "stg_turn_latency", "stg_turn_genai")
MARTS = ("handoff_analysis", "agent_turns")
DBT_MODELS = (*STAGING, *KPI_TABLES, *MARTS)


def test_every_table_asset_declares_columns_owner_group_kinds_and_freshness() -> None:
    defs = build_definitions(Settings.from_env({"POLYAI_WINDOWS_PER_RUN": "5"}))
    specs = {spec.key.path[-1]: spec for spec in defs.resolve_all_asset_specs()}
    assert set(specs) == set(TABLES) | set(DBT_MODELS) | {"lake", "qa_samples", "sync_state"}
    for name in (*STAGING, *MARTS):  # dbt's own models: described in the dbt project
        model = specs.pop(name)
        assert model.group_name == "polyai_analytics" and model.owners == ["team:data-platform"]
        assert model.kinds == {"dbt", "sql"} and model.description
        assert model.freshness_policy == FRESHNESS
    lake = specs.pop("lake")
    assert lake.kinds == {"parquet"} and lake.freshness_policy == FRESHNESS
    qa = specs.pop("qa_samples")
    assert qa.group_name == "polyai_analytics" and "dagster/column_schema" in qa.metadata
    state = specs.pop("sync_state")
    assert not defs.resolve_assets_def(state.key).is_executable  # written by the sync step
    for name, spec in specs.items():
        columns = spec.metadata["dagster/column_schema"].columns
        assert [c.name for c in columns] == [c.name for c in schema.metadata.tables[name].columns]
        assert spec.owners == ["team:data-platform"]
        assert spec.group_name == ("polyai" if name in TABLES else "polyai_analytics")
        assert spec.kinds & {"duckdb", "dbt"}  # the tables' writer, or the KPIs' dbt models
        assert spec.description
        assert spec.freshness_policy == FRESHNESS
    for name in KPI_TABLES:  # downstream of the staging views over the tables
        assert {dep.asset_key.path[-1] for dep in specs[name].deps} <= set(STAGING)
    for name in STAGING:  # which read the tables
        deps = {key.path[-1] for key in defs.resolve_asset_graph().get(
            AssetKey(["polyai", name])).parent_entity_keys}  # fmt: skip
        assert deps and deps <= set(TABLES)


def test_the_tables_are_one_step_and_what_is_computed_from_them_a_step_each() -> None:
    """The dbt models are one step (dbt builds them together), subsettable like the others."""
    defs = build_definitions(Settings.from_env({"POLYAI_WINDOWS_PER_RUN": "5"}))
    graph = defs.resolve_asset_graph()
    (sync,) = {defs.resolve_assets_def(AssetKey(["polyai", t])) for t in TABLES}
    assert not sync.can_subset  # one API pass writes all four
    assert sync.backfill_policy == BackfillPolicy.multi_run(max_partitions_per_run=5)
    assert sync.op.pool == POOL
    downstream = [*DBT_MODELS, "lake", "qa_samples"]
    for name in downstream:
        asset = defs.resolve_assets_def(AssetKey(["polyai", name]))
        if name in DBT_MODELS:  # one step, dbt selects what the run selected
            assert asset.can_subset and {k.path[-1] for k in asset.keys} == set(DBT_MODELS)
        else:
            assert asset.keys == {AssetKey(["polyai", name])}  # selecting one writes only it
        # Same partitions and policy as the tables: a backfill runs them in the tables' runs.
        assert asset.partitions_def == sync.partitions_def
        assert asset.backfill_policy == sync.backfill_policy
        assert asset.op.pool == POOL
        condition = graph.get(AssetKey(["polyai", name])).automation_condition
        assert condition is not None and condition.get_label() == WHEN_TABLES_CHANGE.get_label()
    # The window checks are partitioned, on the tables; the sync job plans them, and never
    # the scope freshness check (on the sync_state table, run by its own hourly job).
    checks = {key.name: key for key in graph.asset_check_keys}
    dbt_tests = {name for name in checks if name not in {c.name for c in CHECKS} | {CHECK_NAME}}
    assert {checks[name].asset_key.path[-1] for name in dbt_tests} >= {*TABLES[:1], *KPI_TABLES}
    assert {check.name for check in CHECKS} | {CHECK_NAME} <= set(checks)
    for check in CHECKS:
        assert graph.get(checks[check.name]).partitions_def == sync.partitions_def
    job = defs.resolve_job_def(SYNC_JOB)
    assert {node.name for node in job.nodes} == {
        SYNC_STEP,
        WINDOW_CHECKS,
        "polyai_dbt",
        "lake",
        "qa_samples",
    }
    assert {key.path[-1] for key in job.asset_layer.selected_asset_keys} == {
        *TABLES,
        *downstream,
    }
    assert checks[CHECK_NAME].asset_key == AssetKey(["polyai", "sync_state"])


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


def test_the_automation_interval_setting_reaches_the_downstream_sensor() -> None:
    from core.names import DOWNSTREAM_SENSOR

    settings = Settings.from_env({"POLYAI_AUTOMATION_INTERVAL_SECONDS": "5"})
    sensors = build_definitions(settings).sensors or []
    (sensor,) = [s for s in sensors if s.name == DOWNSTREAM_SENSOR]
    assert sensor.minimum_interval_seconds == 5
