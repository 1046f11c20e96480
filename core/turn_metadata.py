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


def typed_metadata(metadata: Mapping[str, Any], issues: Counter[str]) -> dict[str, Any]:
    """The values of ``turn_genai``'s typed columns that ``metadata`` holds, by column name
    (a column it does not hold is absent); a value that is not what a column takes is
    counted in ``issues`` by the column builder, not here."""
    row: dict[str, Any] = {}
    for key, value in metadata.items():
        column = _COLUMN_OF_KEY.get(key)
        if column is not None and row.get(column) is None:
            row[column] = value
    requests = row.get("llm_requests")
    if isinstance(requests, list) and requests:
        _from_requests(row, [r for r in requests if isinstance(r, Mapping)], issues)
    return row


def _from_requests(
    row: dict[str, Any], requests: list[Mapping[str, Any]], issues: Counter[str]
) -> None:
    """Fill the model, tokens and time to first token ``row`` lacks from its LLM requests."""
    if not requests:
        return
    first = _keyed(requests[0])
    for column in _FROM_FIRST_REQUEST:
        if row.get(column) is None and first.get(column) is not None:
            row[column] = first[column]
    for column in api.LLM_REQUEST_TOTALS:
        if row.get(column) is not None:
            continue
        values = [_keyed(r).get(column) for r in requests]
        given = [v for v in values if v is not None]
        if not given:
            continue
        if all(isinstance(v, int) and not isinstance(v, bool) for v in given):
            row[column] = sum(given)
        else:  # not all counts: no total rather than a wrong one (raw keeps them)
            issues[f"turn_genai.llm_requests.{column}"] += 1


def _keyed(request: Mapping[str, Any]) -> dict[str, Any]:
    """One LLM request's values under the same keys, without looking deeper."""
    return {_COLUMN_OF_KEY[key]: value for key, value in request.items() if key in _COLUMN_OF_KEY}
