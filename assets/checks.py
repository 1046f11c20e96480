"""Checks on what a window sync wrote: each is one SQL query over the warehouse, scoped to the
window, that counts the rows breaking one rule. Plain functions over a warehouse connection
(DuckDB or PostgreSQL: the SQL is standard), so
the Dagster asset runs them after every load and tests can run them on a broken warehouse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.windows import Scope, Window
from resources.warehouse import COLLISION


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    violations: int
    description: str
    warn_only: bool = False


@dataclass(frozen=True)
class WindowCheck:
    name: str
    asset: str
    """The table (and asset) the check is about."""
    description: str
    violations_sql: str
    """A query returning one number: how many rows break the rule in the window."""
    warn_only: bool = False
    """Whether a violation is a warning (worth a look, the data is consistent) rather than an
    error."""


_CONV = "{s}.conversations c WHERE c.environment = $env AND c.channel = $channel AND c.window_start = $start"  # noqa: E501
_IN_WINDOW = f"SELECT id FROM {_CONV}"

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
        "SELECT count(*) - count(DISTINCT (conversation_id, turn_index)) FROM {s}.turns "
        f"WHERE conversation_id IN ({_IN_WINDOW})",
    ),
    WindowCheck(
        "turns_have_a_conversation",
        "turns",
        "Every turn of the window's scope and dates belongs to a stored conversation.",
        "SELECT count(*) FROM {s}.turns t WHERE t.environment = $env AND t.channel = $channel "
        "AND t.conversation_date >= CAST($start AS DATE) AND t.conversation_date < CAST($end AS DATE) "  # noqa: E501
        "AND t.conversation_id NOT IN (SELECT id FROM {s}.conversations)",
    ),
    WindowCheck(
        "num_turns_matches_turns_loaded",
        "conversations",
        "Each conversation's num_turns equals the turns stored for it.",
        f"SELECT count(*) FROM {_CONV} AND coalesce(c.num_turns, -1) <> "
        "(SELECT count(*) FROM {s}.turns t WHERE t.conversation_id = c.id)",
    ),
    WindowCheck(
        "turn_indexes_have_no_gaps",
        "turns",
        "Each conversation's turn indexes run 0, 1, 2, ... without a gap.",
        "SELECT count(*) FROM (SELECT conversation_id FROM {s}.turns "
        f"WHERE conversation_id IN ({_IN_WINDOW}) GROUP BY conversation_id "
        "HAVING min(turn_index) <> 0 OR max(turn_index) <> count(*) - 1) AS gapped",
    ),
    WindowCheck(
        "timestamps_inside_the_window",
        "conversations",
        "Conversations written by the window's last load started inside the window.",
        "SELECT count(*) FROM {s}.conversations c WHERE c.environment = $env "
        "AND c.channel = $channel AND c.load_id = $load "
        "AND NOT (c.started_at >= $start AND c.started_at < $end)",
        # The API served them for this window: they stay with it (IN_WINDOW), reported.
        warn_only=True,
    ),
    WindowCheck(
        "latencies_non_negative",
        "turns",
        "No turn latency or latency stage is negative.",
        f"SELECT (SELECT count(*) FROM {{s}}.turns WHERE latency < 0 "
        f"AND conversation_id IN ({_IN_WINDOW})) + (SELECT count(*) FROM {{s}}.turn_latency "
        f"WHERE latency_ms < 0 AND conversation_id IN ({_IN_WINDOW}))",
    ),
    WindowCheck(
        "unique_latency_keys",
        "turn_latency",
        "No (conversation_id, turn_index, stage) appears twice.",
        "SELECT count(*) - count(DISTINCT (conversation_id, turn_index, stage)) "
        f"FROM {{s}}.turn_latency WHERE conversation_id IN ({_IN_WINDOW})",
    ),
    WindowCheck(
        "quarantine_under_threshold",
        "conversations",
        "The window's last load quarantined no more records than the threshold allows.",
        "SELECT CASE WHEN q.n > $max_fraction * (q.n + (SELECT count(*) FROM {s}.conversations "
        "WHERE load_id = $load)) THEN q.n ELSE 0 END "
        "FROM (SELECT count(*) AS n FROM {s}.quarantine WHERE load_id = $load "
        f"AND reason NOT LIKE '{COLLISION}:%') q",
    ),
    WindowCheck(
        "no_conversation_held_by_another_window",
        "conversations",
        "The window's last load brought no conversation that another window or scope holds "
        "(each such copy is in the quarantine table, reason 'collision: ...').",
        f"SELECT count(*) FROM {{s}}.quarantine WHERE load_id = $load "
        f"AND reason LIKE '{COLLISION}:%'",
        warn_only=True,
    ),
    WindowCheck(
        "resync_kept_most_conversations",
        "conversations",
        "The window's last load kept at least half of the conversations it held before "
        "(violations: how many it dropped).",
        "SELECT coalesce(max(CASE WHEN 2 * n.kept < s.replaced_conversations "
        "THEN s.replaced_conversations - n.kept ELSE 0 END), 0) "
        f"FROM {{s}}.sync_state s, (SELECT count(*) AS kept FROM {_CONV}) n "
        "WHERE s.load_id = $load",
        warn_only=True,
    ),
)


def run_checks(
    connect: Callable[[], Any],
    schema_ref: str,
    scope: Scope,
    window: Window,
    load_id: str,
    max_quarantined_fraction: float,
) -> list[CheckOutcome]:
    """Every check on one window, with the number of rows breaking each."""
    params = {
        "env": scope.environment,
        "channel": scope.channel,
        "start": window.start,
        "end": window.end,
        "load": load_id,
        "max_fraction": max_quarantined_fraction,
    }
    outcomes = []
    with connect() as con:
        for check in CHECKS:
            sql = check.violations_sql.format(s=schema_ref)
            used = {name: value for name, value in params.items() if f"${name}" in sql}
            (violations,) = con.execute(sql, used).fetchone()
            outcomes.append(
                CheckOutcome(
                    check.name,
                    int(violations) == 0,
                    int(violations),
                    check.description,
                    check.warn_only,
                )
            )
    return outcomes
