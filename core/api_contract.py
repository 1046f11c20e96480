"""The PolyAI Conversations API v3 contract, in one place.

Parameter names, allowed values and response keys live here so that the client, the
normalizer and the bundled simulator agree by construction. The source is PolyAI's published
documentation (../shared/API.md, section "What PolyAI's published documentation says": the v3
OpenAPI file, the Conversations API guide and the error-codes page of docs.poly.ai). Where
nothing is published, the name is marked *ASSUMED* here: if the real API differs, this is the
one line to change, and the raw JSON each table keeps holds whatever the API really sent.
"""

from __future__ import annotations

from typing import Final

ENDPOINT_TEMPLATE: Final = "/v3/{account_id}/{project_id}/conversations"
API_KEY_HEADER: Final = "x-api-key"

REGION_BASE_URLS: Final = {
    "us-1": "https://api.us-1.platform.polyai.app",
    "uk-1": "https://api.uk-1.platform.polyai.app",
    "euw-1": "https://api.euw-1.platform.polyai.app",
    "studio": "https://api.studio.poly.ai",  # Agent Studio (self-serve) projects
}
WRONG_HOST_HINT: Final = (
    "the Conversations API is at api.<region>.platform.polyai.app (us-1, uk-1, euw-1) or "
    "api.studio.poly.ai, not api.<region>.poly.ai (the Agents API)"
)
"""Why a 404 is often the wrong host (the guide's warning)."""

ENVIRONMENTS: Final = ("sandbox", "pre-release", "live")
DEFAULT_ENVIRONMENT: Final = "live"

MIN_LIMIT: Final = 1
MAX_LIMIT: Final = 1000
"""The spec's bounds (its default is 1000, the guide's table still says 5: always send it)."""

# Query parameter names.
P_CLIENT_ENV: Final = "client_env"
P_START_TIME: Final = "start_time"
P_END_TIME: Final = "end_time"
P_CHANNEL: Final = "channel"  # repeatable: channel=VOICE-SIP&channel=WEBCHAT
P_LIMIT: Final = "limit"
P_CURSOR: Final = "cursor"  # wins over offset when both are sent
P_OFFSET: Final = "offset"
P_VARIANT_ID: Final = "variant_id"
P_VARIANT_NAME: Final = "variant_name"
P_IN_PROGRESS: Final = "in_progress"
P_INCLUDE_LATENCY: Final = "include_latency"
P_INCLUDE_TURN_METADATA: Final = "include_turn_metadata"
"""Published (boolean, default false) until PolyAI removed it from the docs on 2026-05-15: the
server may now ignore it. Sent anyway; its absence from a response is not an error."""
P_QUERY_TYPE: Final = "query_type"
P_SAMPLE: Final = "sample"
P_QUERY: Final = "query"
P_TURN_TYPE: Final = "turn_type"  # transcript search only

# Response keys.
R_CONVERSATIONS: Final = "conversations"
R_CURSOR: Final = "cursor"
R_NEXT_OFFSET: Final = "next_offset"

REQUIRED_CONVERSATION_FIELDS: Final = (
    "id",
    "account_id",
    "project_id",
    "environment",
    "started_at",
    "channel",
    "in_progress",
)
"""What the spec requires of a conversation; every other field may be absent. Durations
(``total_duration``, ``polyai_duration``) are in seconds. ``turns`` may be empty while
``num_turns`` > 0: the project's "Conversation transcript" setting (``show_transcripts``) is
off, which is a valid response."""
TRANSCRIPTS_HIDDEN_CAUSE: Final = (
    "the project's transcript access is off: turn on 'Conversation transcript' "
    "(show_transcripts) under API Keys > Configuration in Agent Studio"
)

# Turn keys (published).
T_LATENCY: Final = "latency"
"""A JSON number: the agent's latency for the turn in **seconds** (a float), added by
``include_latency``."""
T_BARGE_IN: Final = "barge_in"  # whether the user interrupted the agent (the guide)
T_METADATA: Final = "metadata"
"""The object ``include_turn_metadata`` adds to each turn. Its inner shape was never published;
see :data:`TURN_METADATA_KEYS`."""

# The keys a turn's metadata may hold that the warehouse types, column by column. Every one is
# optional. The camelCase names are those of the nearest published object (the debug chat's
# metadata: nodeTrace, functionEvents, retrievedTopics, citedTopic, llmRequests); the
# snake_case ones are this project's earlier assumption. ASSUMED: which key holds what.
TURN_METADATA_KEYS: Final = {
    "model": ("model",),
    "input_tokens": ("input_tokens", "inputTokens"),
    "output_tokens": ("output_tokens", "outputTokens"),
    "time_to_first_token_ms": ("time_to_first_token_ms", "timeToFirstTokenMs"),
    "function_calls": ("function_calls", "functionCalls", "functionEvents"),
    "knowledge_topics": ("knowledge_topics", "knowledgeTopics", "retrievedTopics"),
    "cited_topic": ("cited_topic", "citedTopic"),
    "node_trace": ("node_trace", "nodeTrace"),
    "llm_requests": ("llm_requests", "llmRequests"),
}
LLM_REQUEST_TOTALS: Final = ("input_tokens", "output_tokens")
"""Columns summed over ``llmRequests`` items (read with the same keys) when the metadata does
not give them itself; the others come from the first request (core.turn_metadata)."""

# ASSUMED (not published): with include_latency=true, a per-stage breakdown of each turn's
# latency at the conversation level, in milliseconds. PolyAI publishes only the turn's own
# float `latency`; the stage table (turn_latency) is filled only where a response has this:
#   conversation["latency"] = {"turns": [{"turn_index": int,
#       "stages": {"speech_recognition": ms, "model": ms, "text_to_speech": ms}}, ...]}
R_LATENCY_BREAKDOWN: Final = "latency"
LATENCY_STAGES: Final = ("speech_recognition", "model", "text_to_speech")

# Channels: a request's filter and a response's label are not the same vocabulary. Responses
# carry analytics labels (VOICE-SIP, WEBCHAT; CHAT until the webchat label was renamed WEBCHAT
# in 2026-03); the filter is documented as "e.g. voice, chat" but the guide's own example
# filters channel=WEBCHAT. A configured channel (a partition key) maps to the labels it
# accepts here, and core.channels decides which values the filter sends.
CHANNEL_LABELS: Final = {
    "voice": ("VOICE-SIP",),
    "chat": ("WEBCHAT", "CHAT"),
}
CHANNEL_FILTERS: Final = ("both", "labels", "name")
"""What ``channel=`` sends for a configured channel: its name and its labels (default: the
union matches whichever spelling the API filters on), its labels only, or its name only."""

QUERY_TYPES: Final = ("transcript", "semantic")
TURN_TYPES: Final = ("user", "agent")
SAMPLE_MODES: Final = ("random",)

# The error envelope of every 4xx/5xx (the spec's Error schema).
E_SUCCESS: Final = "success"  # always false
E_ERROR: Final = "error"
E_ERROR_ID: Final = "error_id"
"""The request's correlation id, also sent as :data:`CORRELATION_ID_HEADER`; PolyAI support
asks for it."""
E_ERROR_CODE: Final = "error_code"  # UPPER_SNAKE, e.g. PROJECT_NOT_FOUND
PROJECT_NOT_FOUND: Final = "PROJECT_NOT_FOUND"  # the 404 of an unknown account or project
E_ERROR_MESSAGE: Final = "error_message"
E_DATA: Final = "data"  # always null
CORRELATION_ID_HEADER: Final = "X-PolyAI-Correlation-Id"

# Window semantics are not stated by the API reference. We treat a window as half-open,
# start_time <= started_at < end_time, so that adjacent daily windows never share a
# conversation. The simulator implements the same rule.
WINDOW_IS_HALF_OPEN: Final = True


def endpoint_path(account_id: str, project_id: str) -> str:
    """The path of the conversations endpoint for one account and project."""
    return ENDPOINT_TEMPLATE.format(account_id=account_id, project_id=project_id)
