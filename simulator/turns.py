"""The turns of a synthetic conversation (what is said, when, how fast, the turn metadata) and
the published shapes around them (channel labels, metrics, the keys a request's flags add).

Everything here is drawn from the random streams the caller passes in, in a fixed order, so a
conversation stays a pure function of its seed (see :mod:`simulator.data`, which wraps these
turns in the rest of the API object). What PolyAI publishes since the first version of this
module (``barge_in``, the turn's ``latency`` in seconds, the ``metadata`` key) is drawn from
streams of its own, so the draws of the rest of a conversation are as they always were.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core import api_contract as api

# (user input, agent response, English user input or "" when it already is, English response)
_EXCHANGES = (
    ("I'd like to book a table for two tonight", "Of course! What time would suit you?", "", ""),
    ("Can I change my reservation?", "Sure, could you tell me the name on the booking?", "", ""),
    ("What are your opening hours?", "We're open from 9am to 10pm every day.", "", ""),
    ("my parcel hasn't arrived 📦", "I'm sorry to hear that. Let me check its status.", "", ""),
    ("Talk to a human please", "Let me transfer you to a colleague.", "", ""),
    (
        "¿Hablan español?",
        "Sí, puedo ayudarle en español.",
        "Do you speak Spanish?",
        "Yes, I can help you in Spanish.",
    ),
    (
        "Je voudrais annuler ma commande",
        "Bien sûr, je peux vous aider à annuler.",
        "I would like to cancel my order",
        "Of course, I can help you cancel.",
    ),
    (
        "予約を変更したいです",
        "かしこまりました。ご予約のお名前を教えてください。",
        "I want to change my reservation",
        "Certainly. May I have the name on the booking?",
    ),
)
_INTENTS = ("book_table", "change_booking", "opening_hours", "cancel_order", "track_parcel")
_MODELS = ("gpt-4o-mini", "claude-3-5-haiku", "polyai-raven-2")
_TOOLS = ("lookup_booking", "create_booking", "track_parcel", "transfer_call")
_TOPICS = ("opening_hours", "cancellation_policy", "delivery_times", "allergens")
_NODES = ("greeting", "identify_intent", "collect_details", "call_tool", "answer", "goodbye")
BARGE_IN_RATE = 0.10
"""Share of voice turns where the caller talks over the agent (never on chat)."""


CHAT_LABEL_RENAMED_AT = datetime(2026, 3, 27, tzinfo=UTC)
"""When the webchat label became ``WEBCHAT``: chats that started before are labelled ``CHAT``."""
_LABEL_BEFORE = {"chat": (CHAT_LABEL_RENAMED_AT, api.CHANNEL_LABELS["chat"][1])}

PII_PHRASES = (
    "you can email me at jane.doe@example.com",
    "my number is +44 7700 900123",
    "the card is 4111 1111 1111 1111",
    "call me back on 020 7946 0958",
    "it's 5500-0000-0000-0004, expiry next May",
)
"""What callers say that must never be stored when transcripts are redacted."""


def draw_int(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform in [lo, hi]: ``randint`` without its argument checks, which dominate here."""
    return lo + int(rng.random() * (hi - lo + 1))


def iso(moment: datetime) -> str:
    """ISO 8601 with microseconds and a ``Z`` suffix, as the v3 API writes timestamps."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def channel_label(channel: str, started_at: datetime) -> str:
    """The analytics label a response gives a conversation of an internal channel."""
    renamed = _LABEL_BEFORE.get(channel)
    if renamed is not None and started_at < renamed[0]:
        return renamed[1]
    labels = api.CHANNEL_LABELS.get(channel)
    return labels[0] if labels else channel


@dataclass(frozen=True)
class Omitted:
    """Which optional fields one conversation is served without, beyond those its channel (a
    chat has no phone numbers) or its lack of a handoff (no reason, no destination) leave out."""

    variant_name: bool
    """About 5%: the conversation still has its variant, and its ``variant_id``."""
    metrics: bool
    """About 5%: ``metrics`` is ``{}``, as for a project that records none."""

    @classmethod
    def draw(cls, rng: random.Random) -> Omitted:
        """Drawn first from a conversation's own stream for the published shapes."""
        return cls(variant_name=rng.random() < 0.05, metrics=rng.random() < 0.05)


@dataclass
class Dialogue:
    """The turns of one conversation that are over by the simulator's clock."""

    planned_turns: int
    """How many turns the conversation has once finished."""
    end: datetime
    """When the last turn so far ended (the start when there is none yet)."""
    turns: list[dict[str, Any]] = field(default_factory=list)
    """The API objects of the turns."""
    turn_latency: list[dict[str, Any]] = field(default_factory=list)
    """Each turn's latency by stage in milliseconds: the *assumed* breakdown that
    ``SimulatorConfig.latency_breakdown`` serves."""

    @property
    def in_progress(self) -> bool:
        """Whether turns are still to come."""
        return len(self.turns) < self.planned_turns


def draw_dialogue(
    rng: random.Random,
    metadata_rng: random.Random | None,
    shape_rng: random.Random,
    channel: str,
    started_at: datetime,
    now: datetime,
    max_turns: int,
    pii_rate: float,
) -> Dialogue:
    """A conversation's turns up to ``now``: 1 to ``max_turns`` planned, drawn from ``rng``;
    each turn's ``barge_in`` drawn from ``shape_rng`` and, when ``metadata_rng`` is given, its
    ``metadata`` from that. Every turn carries its ``latency`` (seconds, a float), which the
    server leaves out unless ``include_latency`` asks for it."""
    dialogue = Dialogue(planned_turns=draw_int(rng, 1, max_turns), end=started_at)
    for index in range(dialogue.planned_turns):
        user_at = dialogue.end + timedelta(milliseconds=draw_int(rng, 1500, 9000))
        stages = _draw_stages(rng, channel)
        latency = sum(stages.values())
        agent_at = user_at + timedelta(milliseconds=latency)
        if agent_at > now:
            break
        turn = _draw_turn(rng, channel, pii_rate, user_at, agent_at, latency)
        turn[api.T_BARGE_IN] = shape_rng.random() < BARGE_IN_RATE and channel == "voice"
        if metadata_rng is not None:
            turn[api.T_METADATA] = turn_metadata(metadata_rng, stages["model"])
        dialogue.turns.append(turn)
        dialogue.turn_latency.append({"turn_index": index, "stages": stages, "total_ms": latency})
        dialogue.end = agent_at
    return dialogue


def _draw_stages(rng: random.Random, channel: str) -> dict[str, int]:
    """One turn's latency by stage in milliseconds (only voice recognises and speaks)."""
    return {
        "speech_recognition": draw_int(rng, 60, 400) if channel == "voice" else 0,
        "model": draw_int(rng, 150, 1500),
        "text_to_speech": draw_int(rng, 40, 300) if channel == "voice" else 0,
    }


def _draw_turn(
    rng: random.Random,
    channel: str,
    pii_rate: float,
    user_at: datetime,
    agent_at: datetime,
    latency: int,
) -> dict[str, Any]:
    """One turn's API object: what the caller and the agent said, and what was understood."""
    user, agent, user_en, agent_en = rng.choice(_EXCHANGES)
    dtmf = str(draw_int(rng, 0, 9)) if channel == "voice" and rng.random() < 0.05 else ""
    is_silence = channel == "voice" and not dtmf and rng.random() < 0.07
    if is_silence:
        user, user_en = "", ""
    if pii_rate and not is_silence and rng.random() < pii_rate:
        said = rng.choice(PII_PHRASES)
        user, user_en = f"{user} {said}", f"{user_en} {said}"
    is_ood = not is_silence and rng.random() < 0.08
    return {
        "user_input": user,
        "user_input_dtmf": dtmf,
        "agent_response": agent,
        "user_input_datetime": iso(user_at),
        "agent_response_datetime": iso(agent_at),
        api.T_LATENCY: round(latency / 1000, 3),
        "translated_user_input": user_en,
        "english_agent_response": agent_en,
        "intents": [] if is_ood else rng.sample(_INTENTS, k=draw_int(rng, 0, 2)),
        "entities": (
            [{"type": "party_size", "value": str(draw_int(rng, 1, 8))}]
            if rng.random() < 0.3
            else []
        ),
        "is_ood": is_ood,
        "is_silence": is_silence,
    }


def turn_metadata(rng: random.Random, model_ms: int) -> dict[str, Any]:
    """One turn's ``metadata`` (``include_turn_metadata``). Its shape is not published: the
    camelCase keys of the nearest published object (the debug chat's metadata), every one of
    them present only some of the time, and now and then none at all."""
    metadata: dict[str, Any] = {}
    if rng.random() < 0.08:
        return metadata
    if rng.random() < 0.9:
        metadata["llmRequests"] = [
            {
                "model": rng.choice(_MODELS),
                "inputTokens": draw_int(rng, 300, 4000),
                "outputTokens": draw_int(rng, 10, 200),
                "timeToFirstTokenMs": draw_int(rng, 80, max(81, model_ms)),
            }
            for _ in range(draw_int(rng, 1, 2))
        ]
    if rng.random() < 0.25:
        arguments = {"party_size": draw_int(rng, 1, 8)}
        metadata["functionEvents"] = [{"name": rng.choice(_TOOLS), "arguments": arguments}]
    topics = rng.sample(_TOPICS, k=draw_int(rng, 0, 2))
    if topics:
        metadata["retrievedTopics"] = topics
        if rng.random() < 0.6:
            metadata["citedTopic"] = topics[0]
    if rng.random() < 0.7:
        start = draw_int(rng, 0, len(_NODES) - 2)
        metadata["nodeTrace"] = list(_NODES[start : start + draw_int(rng, 2, 3)])
    return metadata


def served_metrics(total_seconds: int, turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``metrics`` of a conversation whose project records call duration and turns: a
    metric written once is a string, one written twice or more a list of strings (the spec's
    ``oneOf``, whose list has at least two items); one never written is absent."""
    metrics: dict[str, Any] = {"CALL_DURATION": str(total_seconds)}
    if len(turns) == 1:
        metrics["CALL_TURN"] = turns[0]["user_input_datetime"]
    elif turns:
        metrics["CALL_TURN"] = [t["user_input_datetime"] for t in turns]
    return metrics


def without_optional_keys(
    conversation: dict[str, Any], latency: bool = False, metadata: bool = False
) -> dict[str, Any]:
    """The conversation as served with the given flags: the keys they add removed otherwise
    (``include_latency``: each turn's latency and the assumed breakdown;
    ``include_turn_metadata``: each turn's metadata)."""
    if not latency:
        conversation.pop(api.R_LATENCY_BREAKDOWN, None)
    if not (latency and metadata):
        for turn in conversation["turns"]:
            if not latency:
                turn.pop(api.T_LATENCY, None)
            if not metadata:
                turn.pop(api.T_METADATA, None)
    return conversation
