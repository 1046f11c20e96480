"""Privacy controls for conversations, applied to each page as it arrives from the API, before
anything is normalized, staged, quarantined, sampled or exported (the raw JSON included).

Both are off by default:

- ``hash_key`` (``POLYAI_HASH_PHONE_NUMBERS`` with the secret ``POLYAI_PHONE_HASH_SALT``):
  ``from_number`` and ``to_number`` are stored as ``hmac-sha256:<hex>`` of the number, keyed
  by the salt. The same number hashes the same way (distinct callers can be counted and
  joined); without the salt a number cannot be tested against the hashes.
- ``redact`` (``POLYAI_REDACT_TRANSCRIPTS``): email addresses, payment card numbers and
  phone numbers in a turn's transcript text are replaced by ``[email]``, ``[card]`` and
  ``[phone]``. A run of 9 to 19 digits (spaces, dots, dashes and brackets allowed between
  them) is a card number when it has 13 or more and passes the Luhn check, or has more than
  15; otherwise a phone number. Shorter runs (dates, times, amounts) are kept. A record the
  normalizer would quarantine (not an object, turns that are not objects) has every string in
  it redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

PHONE_FIELDS = ("from_number", "to_number")
TRANSCRIPT_FIELDS = (
    "user_input",
    "user_input_dtmf",
    "agent_response",
    "translated_user_input",
    "english_agent_response",
)
"""The fields of a turn that hold what was said (or keyed in)."""

HASH_PREFIX = "hmac-sha256:"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_NUMBER = re.compile(r"(?<![\w+])\+?\(?\d(?:[\s().-]{0,2}\d){8,18}(?!\w)")
"""A run of 9 to 19 digits, spaces, dots, dashes and brackets between them allowed: shorter
runs (dates, times, amounts) are left alone."""


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _number(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    if text.startswith("+") and len(digits) <= 15:
        return "[phone]"  # international format
    if len(digits) >= 13 and _luhn(digits):
        return "[card]"
    # Up to 15 digits (E.164) a phone number; longer, treated as a card number mistyped.
    return "[phone]" if len(digits) <= 15 else "[card]"


def redact(text: str) -> str:
    """``text`` with email addresses, card numbers and phone numbers replaced."""
    return _NUMBER.sub(_number, _EMAIL.sub("[email]", text))


def hash_number(number: str, key: bytes) -> str:
    """The keyed hash a phone number is stored as."""
    return HASH_PREFIX + hmac.new(key, number.encode(), hashlib.sha256).hexdigest()


def _redact_all(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_all(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_all(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class PrivacyPolicy:
    """What to do to each conversation before it is written anywhere."""

    hash_key: bytes | None = None
    redact: bool = False

    @property
    def active(self) -> bool:
        return self.hash_key is not None or self.redact

    def apply(self, record: Any) -> Any:
        """The record as it may be stored (a dict is changed in place and returned)."""
        if not isinstance(record, dict):
            return _redact_all(record) if self.redact else record
        if self.hash_key is not None:
            for field in PHONE_FIELDS:
                number = record.get(field)
                if isinstance(number, str) and number and not number.startswith(HASH_PREFIX):
                    record[field] = hash_number(number, self.hash_key)
        if self.redact:
            turns = record.get("turns")
            if isinstance(turns, list):
                for index, turn in enumerate(turns):
                    if not isinstance(turn, dict):
                        turns[index] = _redact_all(turn)
                        continue
                    for field in TRANSCRIPT_FIELDS:
                        if isinstance(turn.get(field), str):
                            turn[field] = redact(turn[field])
            elif turns is not None:
                record["turns"] = _redact_all(turns)
        return record
