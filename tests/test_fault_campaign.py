"""The fault campaign (devtools/campaign.py) at the size CI runs: every API, process and
warehouse fault, each ending with every conversation landed once. Its summary line is
printed at the end of the pytest run; ``uv run python -m devtools.campaign --scale N`` runs it
larger on its own."""

from collections.abc import Callable

import pytest

from devtools.campaign import run, summary
from tests.conftest import CAMPAIGN_PROPERTY

pytestmark = pytest.mark.e2e


def test_no_fault_loses_or_duplicates_a_conversation(
    record_property: Callable[[str, object], None],
) -> None:
    lines: list[str] = []
    outcomes = run(scale=1, seed=1, write=lines.append)
    record_property(CAMPAIGN_PROPERTY, [*lines, summary(outcomes)])
    failed = [o.line() for o in outcomes if not o.passed]
    assert not failed, "\n".join(failed)
    assert sum(o.lost for o in outcomes) == 0 and sum(o.duplicates for o in outcomes) == 0
    assert all(o.expected > 0 and o.landed == o.expected for o in outcomes)
    assert sum(o.faults for o in outcomes) >= len(outcomes)  # every scenario met its fault
