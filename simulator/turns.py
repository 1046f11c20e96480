"""The turns of a synthetic conversation: what is said, when, how fast, and the genAI metadata.

Everything here is drawn from the random streams the caller passes in, in a fixed order, so a
conversation stays a pure function of its seed (see :mod:`simulator.data`, which wraps these
turns in the rest of the API object).
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
    """Each turn's latency breakdown, as ``include_latency`` serves it."""

    @property
    def in_progress(self) -> bool:
        """Whether turns are still to come."""
        return len(self.turns) < self.planned_turns


def draw_dialogue(
    rng: random.Random,
    genai_rng: random.Random | None,
    channel: str,
    started_at: datetime,
    now: datetime,
    max_turns: int,
    pii_rate: float,
) -> Dialogue:
    """A conversation's turns up to ``now``: 1 to ``max_turns`` planned, drawn from ``rng``,
    with per-turn genAI metadata drawn from ``genai_rng`` when one is given."""
    dialogue = Dialogue(planned_turns=draw_int(rng, 1, max_turns), end=started_at)
    for index in range(dialogue.planned_turns):
        user_at = dialogue.end + timedelta(milliseconds=draw_int(rng, 1500, 9000))
        stages = _draw_stages(rng, channel)
        latency = sum(stages.values())
        agent_at = user_at + timedelta(milliseconds=latency)
        if agent_at > now:
            break
        turn = _draw_turn(rng, channel, pii_rate, user_at, agent_at, latency)
        if genai_rng is not None:
            turn[api.R_GENAI_METADATA] = _genai_metadata(genai_rng, stages["model"])
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
        "latency": latency,
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


def _genai_metadata(rng: random.Random, model_ms: int) -> dict[str, Any]:
    """One turn's genAI metadata: the model, its tokens, tool calls and knowledge used."""
    calls = []
    if rng.random() < 0.25:
        calls.append({"name": rng.choice(_TOOLS), "arguments": {"party_size": draw_int(rng, 1, 8)}})
    return {
        "model": rng.choice(_MODELS),
        "input_tokens": draw_int(rng, 300, 4000),
        "output_tokens": draw_int(rng, 10, 200),
        "time_to_first_token_ms": draw_int(rng, 80, max(81, model_ms)),
        "function_calls": calls,
        "knowledge_topics": rng.sample(_TOPICS, k=draw_int(rng, 0, 2)),
    }
