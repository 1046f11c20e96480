"""The QA sample: each window, a random sample of conversations per scope drawn through the
API's ``sample=random`` mode, for people to review. Written to ``qa_samples`` in the
warehouse and as one CSV per window in the lake."""

from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, MultiPartitionsDefinition

from assets.analytics import window_asset
from assets.keys import CONVERSATIONS, QA_SAMPLES, analytics_spec
from core.env import Env
from core.windows import Scope, Window
from sync.qa_sample import draw_sample


def qa_sample_asset(
    partitions_def: MultiPartitionsDefinition, windows_per_run: int, size: int
) -> AssetsDefinition:
    spec = analytics_spec(
        QA_SAMPLES,
        {"duckdb", "csv"},
        f"A random sample of {size} conversations ({Env.POLYAI_QA_SAMPLE_SIZE}) per window and "
        "scope (the API's sample=random mode) with a readable transcript, for QA review.",
        (CONVERSATIONS,),
        table="qa_samples",
    )

    def compute(context: AssetExecutionContext, scope: Scope, window: Window) -> dict[str, Any]:
        resources = context.resources
        return draw_sample(
            resources.polyai, resources.warehouse, resources.lake, scope, window, size
        )

    return window_asset(spec, partitions_def, windows_per_run, {"polyai", "lake"}, compute)
