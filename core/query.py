"""A typed Conversations API query, validated before anything is sent.

Every parameter of ../shared/API.md has a field here; :meth:`ConversationQuery.params` turns a
query into the request's query string with the names from :mod:`core.api_contract`. Invalid
combinations (both variant id and name, a search without text, a search together with
sampling, a limit out of range, a start after the end, naive timestamps) raise
:class:`QueryError` naming the problem, so no request is ever sent for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from core import api_contract as api
from core.channels import DEFAULT_CHANNELS, ChannelMap
from core.errors import PolyAISyncError
from core.windows import Scope, Window

QueryType = Literal["transcript", "semantic"]
TurnType = Literal["user", "agent"]
Sample = Literal["random"]


class QueryError(PolyAISyncError, ValueError):
    """A query the API would reject; the message names the parameter."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ConversationQuery:
    """One query of the conversations endpoint, without its page position."""

    start_time: datetime
    end_time: datetime
    environment: str = api.DEFAULT_ENVIRONMENT
    channels: tuple[str, ...] = ()
    limit: int = api.MAX_LIMIT
    variant_id: str | None = None
    variant_name: str | None = None
    in_progress: bool | None = None
    include_latency: bool = False
    include_turn_metadata: bool = False
    query_type: QueryType | None = None
    query: str | None = None
    turn_type: TurnType | None = None
    sample: Sample | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Parameters this version does not know yet, sent as given."""

    def __post_init__(self) -> None:
        for name in ("start_time", "end_time"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise QueryError(f"{name} {value!r} must be a timezone-aware datetime")
        if self.start_time >= self.end_time:
            raise QueryError(
                f"start_time {_iso(self.start_time)} must be before end_time {_iso(self.end_time)}"
            )
        if self.environment not in api.ENVIRONMENTS:
            raise QueryError(
                f"environment {self.environment!r} is not one of {', '.join(api.ENVIRONMENTS)}"
            )
        if isinstance(self.channels, str):
            raise QueryError("channels must be a sequence of channel names, not one string")
        if not api.MIN_LIMIT <= self.limit <= api.MAX_LIMIT:
            raise QueryError(
                f"limit must be between {api.MIN_LIMIT} and {api.MAX_LIMIT}, got {self.limit}"
            )
        if self.variant_id is not None and self.variant_name is not None:
            raise QueryError("give either variant_id or variant_name, not both")
        if self.query_type is not None and self.query_type not in api.QUERY_TYPES:
            raise QueryError(f"query_type {self.query_type!r} is not transcript or semantic")
        if self.query_type is not None and not self.query:
            raise QueryError(f"query_type {self.query_type!r} needs a query text")
        if self.query and self.query_type is None:
            raise QueryError("query is only used with query_type transcript or semantic")
        if self.query_type is not None and self.sample is not None:
            raise QueryError("query_type and sample are mutually exclusive retrieval modes")
        if self.sample is not None and self.sample not in api.SAMPLE_MODES:
            raise QueryError(f"sample {self.sample!r} is not 'random'")
        if self.turn_type is not None and self.turn_type not in api.TURN_TYPES:
            raise QueryError(f"turn_type {self.turn_type!r} is not user or agent")
        if self.turn_type is not None and self.query_type != "transcript":
            raise QueryError("turn_type applies to transcript search only")

    @classmethod
    def for_window(
        cls,
        scope: Scope,
        window: Window,
        limit: int = api.MAX_LIMIT,
        channels: ChannelMap = DEFAULT_CHANNELS,
    ) -> ConversationQuery:
        """The query a sync of one scope over one window sends: every conversation, with
        each turn's latency and metadata; the scope's channel filtered as ``channels``
        spells it."""
        return cls(
            start_time=window.start,
            end_time=window.end,
            environment=scope.environment,
            channels=channels.filter_values(scope.channel),
            limit=limit,
            include_latency=True,
            include_turn_metadata=True,
        )

    def with_limit(self, limit: int) -> ConversationQuery:
        return replace(self, limit=limit)

    def params(self) -> dict[str, Any]:
        """The query string, with the API's parameter names (channels repeat)."""
        params: dict[str, Any] = {
            api.P_CLIENT_ENV: self.environment,
            api.P_START_TIME: _iso(self.start_time),
            api.P_END_TIME: _iso(self.end_time),
            api.P_LIMIT: self.limit,
        }
        if self.channels:
            params[api.P_CHANNEL] = list(self.channels)
        optional = {
            api.P_VARIANT_ID: self.variant_id,
            api.P_VARIANT_NAME: self.variant_name,
            api.P_QUERY_TYPE: self.query_type,
            api.P_QUERY: self.query,
            api.P_TURN_TYPE: self.turn_type,
            api.P_SAMPLE: self.sample,
        }
        params.update({name: value for name, value in optional.items() if value is not None})
        if self.in_progress is not None:
            params[api.P_IN_PROGRESS] = _bool(self.in_progress)
        if self.include_latency:
            params[api.P_INCLUDE_LATENCY] = _bool(True)
        if self.include_turn_metadata:
            params[api.P_INCLUDE_TURN_METADATA] = _bool(True)
        params.update(self.extra)
        return params

    def describe(self) -> str:
        """A short label for logs and errors (never includes secrets: queries hold none)."""
        channels = ",".join(self.channels) or "all channels"
        return f"{self.environment} {channels} {_iso(self.start_time)}..{_iso(self.end_time)}"


def _bool(value: bool) -> str:
    return "true" if value else "false"
