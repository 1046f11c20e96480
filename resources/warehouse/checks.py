"""The checks on a synced window: each is one query, scoped to the window, counting the rows
that break one rule, in the SQL style of :mod:`resources.warehouse.sql`. :func:`run_checks`
runs them all after every load (:mod:`assets.window_checks` records them in Dagster), and
tests run them on a broken warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import api_contract as api
from core.windows import Scope, Window
from resources.warehouse.quarantine import COLLISION
from resources.warehouse.resource import Warehouse
from resources.warehouse.sql import CONVERSATIONS_IN_WINDOW, IN_WINDOW, window_params


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    violations: int
    description: str
    warn_only: bool = False
    explanation: str = "rows break the rule"
    """What the violations are, after their number."""


@dataclass(frozen=True)
class WindowCheck:
    name: str
    asset: str
    """The table (and asset) the check is about."""
    description: str
    violations_sql: str
    """A query returning one number: how many rows break the rule in the window (parameters:
    ``$env``, ``$channel``, ``$start``, ``$end``, ``$load``, ``$max_fraction``)."""
    warn_only: bool = False
    """Whether a violation is a warning (worth a look, the data is consistent) rather than an
    error."""
    explanation: str = "rows break the rule"
    """What the violations are, after their number (with the likely cause, when known)."""


_CONV = f"conversations c WHERE {IN_WINDOW}"
_TURNS_LOADED = "(SELECT count(*) FROM turns t WHERE t.conversation_id = c.id)"

CHECKS: tuple[WindowCheck, ...] = (
    WindowCheck(
        "unique_conversation_ids",
        "conversations",
        "No conversation id appears twice.",
        f"SELECT count(*) - count(DISTINCT c.id) FROM {_CONV}",
    ),
    WindowCheck(
        "unique_turn_keys",
        "turns",
        "No (conversation_id, turn_index) appears twice.",
        "SELECT count(*) - count(DISTINCT (conversation_id, turn_index)) FROM turns "
        f"WHERE conversation_id IN ({CONVERSATIONS_IN_WINDOW})",
    ),
    WindowCheck(
        "turns_have_a_conversation",
        "turns",
        "Every turn of the window's scope and dates belongs to a stored conversation.",
        "SELECT count(*) FROM turns t WHERE t.environment = $env AND t.channel = $channel "
        "AND t.conversation_date >= CAST($start AS DATE) "
        "AND t.conversation_date < CAST($end AS DATE) "
        "AND t.conversation_id NOT IN (SELECT id FROM conversations)",
    ),
    WindowCheck(
        "num_turns_matches_turns_loaded",
        "conversations",
        "Each conversation that came with turns has as many as its num_turns says (one that "
        "came with none is transcripts_visible's).",
        f"SELECT count(*) FROM (SELECT c.num_turns, {_TURNS_LOADED} AS loaded FROM {_CONV}) n "
        "WHERE n.loaded > 0 AND n.num_turns IS NOT NULL AND n.num_turns <> n.loaded",
    ),
    WindowCheck(
        "transcripts_visible",
        "conversations",
        "Finished conversations with num_turns > 0 came with their turns. The API leaves turns "
        f"out when {api.TRANSCRIPTS_HIDDEN_CAUSE.split(':')[0]}; the window still loads, and "
        "the KPIs that need turns are null for it.",
        f"SELECT count(*) FROM (SELECT c.num_turns, c.in_progress, {_TURNS_LOADED} AS loaded "
        f"FROM {_CONV}) n WHERE n.num_turns > 0 AND n.loaded = 0 AND n.in_progress IS NOT TRUE",
        warn_only=True,
        explanation="finished conversations came without their turns although num_turns > 0: "
        f"{api.TRANSCRIPTS_HIDDEN_CAUSE}",
    ),
    WindowCheck(
        "turn_indexes_have_no_gaps",
        "turns",
        "Each conversation's turn indexes run 0, 1, 2, ... without a gap.",
        "SELECT count(*) FROM (SELECT conversation_id FROM turns "
        f"WHERE conversation_id IN ({CONVERSATIONS_IN_WINDOW}) GROUP BY conversation_id "
        "HAVING min(turn_index) <> 0 OR max(turn_index) <> count(*) - 1) AS gapped",
    ),
    WindowCheck(
        "timestamps_inside_the_window",
        "conversations",
        "Conversations written by the window's last load started inside the window.",
        "SELECT count(*) FROM conversations c WHERE c.environment = $env "
        "AND c.channel = $channel AND c.load_id = $load "
        "AND NOT (c.started_at >= $start AND c.started_at < $end)",
        # The API served them for this window: they stay with it (IN_WINDOW), reported.
        warn_only=True,
    ),
    WindowCheck(
        "latencies_non_negative",
        "turns",
        "No turn latency or latency stage is negative.",
        "SELECT (SELECT count(*) FROM turns WHERE latency_s < 0 "
        f"AND conversation_id IN ({CONVERSATIONS_IN_WINDOW})) + (SELECT count(*) FROM turn_latency "
        f"WHERE latency_ms < 0 AND conversation_id IN ({CONVERSATIONS_IN_WINDOW}))",
    ),
    WindowCheck(
        "unique_latency_keys",
        "turn_latency",
        "No (conversation_id, turn_index, stage) appears twice.",
        "SELECT count(*) - count(DISTINCT (conversation_id, turn_index, stage)) "
        f"FROM turn_latency WHERE conversation_id IN ({CONVERSATIONS_IN_WINDOW})",
    ),
    WindowCheck(
        "quarantine_under_threshold",
        "conversations",
        "The window's last load quarantined no more records than the threshold allows.",
        "SELECT CASE WHEN q.n > $max_fraction * (q.n + (SELECT count(*) FROM conversations "
        "WHERE load_id = $load)) THEN q.n ELSE 0 END "
        "FROM (SELECT count(*) AS n FROM quarantine WHERE load_id = $load "
        f"AND reason NOT LIKE '{COLLISION}:%') q",
    ),
    WindowCheck(
        "no_conversation_held_by_another_window",
        "conversations",
        "The window's last load brought no conversation that another window or scope holds "
        "(each such copy is in the quarantine table, reason 'collision: ...').",
        f"SELECT count(*) FROM quarantine WHERE load_id = $load AND reason LIKE '{COLLISION}:%'",
        warn_only=True,
    ),
    WindowCheck(
        "resync_kept_most_conversations",
        "conversations",
        "The window's last load kept at least half of the conversations it held before "
        "(violations: how many it dropped).",
        "SELECT coalesce(max(CASE WHEN 2 * n.kept < s.replaced_conversations "
        "THEN s.replaced_conversations - n.kept ELSE 0 END), 0) "
        f"FROM sync_state s, (SELECT count(*) AS kept FROM {_CONV}) n "
        "WHERE s.load_id = $load",
        warn_only=True,
    ),
)


def run_checks(
    warehouse: Warehouse,
    scope: Scope,
    window: Window,
    load_id: str,
    max_quarantined_fraction: float,
) -> list[CheckOutcome]:
    """Every check on one window, with the number of rows breaking each."""
    params = {
        **window_params(scope, window),
        "end": window.end,
        "load": load_id,
        "max_fraction": max_quarantined_fraction,
    }
    # One statement, a scalar subquery per check: a window's twelve small queries cost
    # DuckDB's per-statement overhead twelve times (28 windows: 0.87 s, combined 0.50 s).
    sql = "SELECT " + ", ".join(f"({check.violations_sql})" for check in CHECKS)
    used = {name: value for name, value in params.items() if f"${name}" in sql}
    with warehouse.connect(read_only=True) as con:
        row = con.execute(sql, used).fetchone()
    assert row is not None
    return [
        CheckOutcome(
            check.name,
            not violations,
            int(violations or 0),
            check.description,
            check.warn_only,
            check.explanation,
        )
        for check, violations in zip(CHECKS, row, strict=True)
    ]
