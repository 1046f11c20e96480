"""The PolyAI Conversations API v3 contract, in one place.

Parameter names, allowed values and response keys live here so that the client and the bundled
simulator agree by construction. Where ../shared/API.md marks a name as *assumed* (not in the
public docs), it is marked here too: if the real API differs, this is the one line to change.
"""

from __future__ import annotations

from typing import Final

ENDPOINT_TEMPLATE: Final = "/v3/{account_id}/{project_id}/conversations"
API_KEY_HEADER: Final = "x-api-key"

REGION_BASE_URLS: Final = {
    "us-1": "https://api.us-1.platform.polyai.app",
    "uk-1": "https://api.uk-1.platform.polyai.app",
    "euw-1": "https://api.euw-1.platform.polyai.app",
}

ENVIRONMENTS: Final = ("sandbox", "pre-release", "live")
DEFAULT_ENVIRONMENT: Final = "live"

MIN_LIMIT: Final = 1
MAX_LIMIT: Final = 1000

# Query parameter names.
P_CLIENT_ENV: Final = "client_env"
P_START_TIME: Final = "start_time"
P_END_TIME: Final = "end_time"
P_CHANNEL: Final = "channel"  # repeatable: channel=voice&channel=chat
P_LIMIT: Final = "limit"
P_CURSOR: Final = "cursor"
P_OFFSET: Final = "offset"
P_VARIANT_ID: Final = "variant_id"
P_VARIANT_NAME: Final = "variant_name"
P_IN_PROGRESS: Final = "in_progress"
P_INCLUDE_LATENCY: Final = "include_latency"
P_INCLUDE_GENAI: Final = "include_genai_metadata"  # ASSUMED name (API.md)
P_QUERY_TYPE: Final = "query_type"
P_SAMPLE: Final = "sample"
P_QUERY: Final = "query"
P_TURN_TYPE: Final = "turn_type"  # ASSUMED name (API.md)

# Response keys.
R_CONVERSATIONS: Final = "conversations"
R_CURSOR: Final = "cursor"
R_NEXT_OFFSET: Final = "next_offset"

# Keys that the optional flags add. ASSUMED shapes (API.md): not in the public docs.
#   include_latency=true -> conversation["latency"] = {
#       "total_ms": int,
#       "turns": [{"turn_index": int, "stages": {"speech_recognition": ms, "model": ms,
#                  "text_to_speech": ms}, "total_ms": int}, ...]}
#   include_genai_metadata=true -> turn["genai_metadata"] = {
#       "model": str, "input_tokens": int, "output_tokens": int,
#       "time_to_first_token_ms": int, "function_calls": [{"name": str, "arguments": {...}}],
#       "knowledge_topics": [str, ...]}
R_LATENCY: Final = "latency"  # ASSUMED key (API.md)
R_GENAI_METADATA: Final = "genai_metadata"  # ASSUMED key (API.md)
LATENCY_STAGES: Final = ("speech_recognition", "model", "text_to_speech")  # ASSUMED names

QUERY_TYPES: Final = ("transcript", "semantic")
TURN_TYPES: Final = ("user", "agent")
SAMPLE_MODES: Final = ("random",)

# Window semantics are not stated by the API reference. We treat a window as half-open,
# start_time <= started_at < end_time, so that adjacent daily windows never share a
# conversation. The simulator implements the same rule.
WINDOW_IS_HALF_OPEN: Final = True


def endpoint_path(account_id: str, project_id: str) -> str:
    """The path of the conversations endpoint for one account and project."""
    return ENDPOINT_TEMPLATE.format(account_id=account_id, project_id=project_id)
