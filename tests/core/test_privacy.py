"""The privacy controls' rules: what is redacted, what is kept, how numbers are hashed, and
the settings that turn them on."""

import pytest

from core.config import ConfigError, Settings
from core.privacy import HASH_PREFIX, PrivacyPolicy, hash_number, redact


@pytest.mark.parametrize(
    ("said", "stored"),
    [
        ("mail me at jane.doe+x@example.co.uk please", "mail me at [email] please"),
        ("the card is 4111 1111 1111 1111 thanks", "the card is [card] thanks"),
        ("dtmf 4111111111111111", "dtmf [card]"),
        ("typo'd card 4111-1111-1111-1112", "typo'd card [card]"),  # 16 digits, no Luhn
        ("call +44 7700 900123 or (020) 7123-4567", "call [phone] or [phone]"),
        ("+86 138 0013 8000", "[phone]"),  # international: a phone, whatever its length
        ("my number is 07700900123.", "my number is [phone]."),
    ],
)
def test_emails_cards_and_phone_numbers_are_replaced(said: str, stored: str) -> None:
    assert redact(said) == stored


@pytest.mark.parametrize(
    "kept",
    [
        "a table for 4 on 2026-11-20 at 19:30",
        "that's 1,234.50 in total, booking 12345678",
        "reference ABC1234567",
        "",
    ],
)
def test_dates_times_amounts_and_short_numbers_are_kept(kept: str) -> None:
    assert redact(kept) == kept


def test_phone_numbers_hash_by_key_and_only_once() -> None:
    policy = PrivacyPolicy(hash_key=b"k" * 16)
    record = {"id": "c", "from_number": "+447700900123", "to_number": "", "turns": []}
    policy.apply(record)
    assert record["from_number"] == hash_number("+447700900123", b"k" * 16)
    assert record["from_number"].startswith(HASH_PREFIX) and len(record["from_number"]) == 76
    assert record["to_number"] == ""  # nothing to hide: a chat has no number
    again = policy.apply(dict(record))
    assert again["from_number"] == record["from_number"]  # not hashed twice
    assert hash_number("+447700900123", b"other-key-000000") != record["from_number"]


def test_redaction_reaches_records_the_normalizer_would_quarantine() -> None:
    policy = PrivacyPolicy(redact=True)
    assert policy.apply(["jane@example.com"]) == ["[email]"]
    record = {"id": "c", "turns": [{"user_input": "jane@example.com"}, "call 07700900123"]}
    assert policy.apply(record)["turns"] == [{"user_input": "[email]"}, "call [phone]"]
    assert policy.apply({"id": "c", "turns": "jane@example.com"})["turns"] == "[email]"
    # Only transcript text: ids and timestamps are left alone.
    turn = {"user_input_datetime": "2026-11-20T10:00:00Z", "agent_response": "07700900123"}
    assert policy.apply({"id": "07700900123", "turns": [turn]})["id"] == "07700900123"
    assert turn == {"user_input_datetime": "2026-11-20T10:00:00Z", "agent_response": "[phone]"}


def test_off_by_default_and_hashing_needs_a_secret_salt() -> None:
    settings = Settings.from_env({})
    assert (settings.hash_phone_numbers, settings.redact_transcripts) == (False, False)
    with pytest.raises(ConfigError, match="POLYAI_PHONE_HASH_SALT") as missing:
        Settings.from_env({"POLYAI_HASH_PHONE_NUMBERS": "true"})
    assert "missing" in str(missing.value)
    with pytest.raises(ConfigError, match="at least 16") as short:
        Settings.from_env({"POLYAI_HASH_PHONE_NUMBERS": "1", "POLYAI_PHONE_HASH_SALT": "s3cr3t"})
    assert "s3cr3t" not in str(short.value)
    with pytest.raises(ConfigError, match="POLYAI_REDACT_TRANSCRIPTS: 'maybe'"):
        Settings.from_env({"POLYAI_REDACT_TRANSCRIPTS": "maybe"})
    on = Settings.from_env(
        {"POLYAI_HASH_PHONE_NUMBERS": "yes", "POLYAI_PHONE_HASH_SALT": "x" * 16,
         "POLYAI_REDACT_TRANSCRIPTS": "on"}
    )  # fmt: skip
    assert (on.hash_phone_numbers, on.redact_transcripts) == (True, True)
    assert "x" * 16 not in repr(on)
