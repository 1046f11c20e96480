"""A turn's ``metadata`` object (``include_turn_metadata``) read into ``turn_genai``'s columns.

PolyAI never published what is inside it. :data:`core.api_contract.TURN_METADATA_KEYS` lists,
per column, the keys that may hold its value (the camelCase names of the nearest published
object first among equals with this project's earlier snake_case ones); every key is optional,
and the object stays whole in ``turn_genai.raw``. When the object gives no model, token counts
or time to first token of its own but lists ``llmRequests``, they are read from those requests:
the first request's model and time to first token, the tokens summed over all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from core import api_contract as api

_COLUMN_OF_KEY: Final = {
    key: column for column, keys in api.TURN_METADATA_KEYS.items() for key in keys
}
_FROM_FIRST_REQUEST: Final = ("model", "time_to_first_token_ms")
"""Read from the first LLM request; :data:`core.api_contract.LLM_REQUEST_TOTALS` are summed."""


def typed_metadata(metadata: Mapping[str, Any], issues: Counter[str]) -> dict[str, Any]:
    """The values of ``turn_genai``'s typed columns that ``metadata`` holds, by column name
    (a column it does not hold is absent; of two keys for one column, the first not null);
    a value that is not what a column takes is counted in ``issues`` by the column builder,
    not here."""
    row = _keyed(metadata)
    requests = row.get("llm_requests")
    if isinstance(requests, list) and requests:
        _from_requests(row, [_keyed(r) for r in requests if isinstance(r, Mapping)], issues)
    return row


def _keyed(source: Mapping[str, Any]) -> dict[str, Any]:
    """``source``'s values by the column their key maps to."""
    row: dict[str, Any] = {}
    for key, value in source.items():
        column = _COLUMN_OF_KEY.get(key)
        if column is not None and row.get(column) is None:
            row[column] = value
    return row


def _from_requests(
    row: dict[str, Any], requests: list[dict[str, Any]], issues: Counter[str]
) -> None:
    """Fill the model, tokens and time to first token ``row`` lacks from its LLM requests
    (each already keyed by column)."""
    if not requests:
        return
    for column in _FROM_FIRST_REQUEST:
        if row.get(column) is None and requests[0].get(column) is not None:
            row[column] = requests[0][column]
    for column in api.LLM_REQUEST_TOTALS:
        if row.get(column) is not None:
            continue
        given = [r[column] for r in requests if r.get(column) is not None]
        if not given:
            continue
        if all(isinstance(v, int) and not isinstance(v, bool) for v in given):
            row[column] = sum(given)
        else:  # not all counts: no total rather than a wrong one (raw keeps them)
            issues[f"turn_genai.llm_requests.{column}"] += 1
