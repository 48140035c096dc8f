"""PHI at rest outside PostgreSQL: dead letters sealed with the DLQ key, the worker's
adverse-event table without narrative or reporter contact (pure; the worker's real
changelog and DLQ are checked in `test_kafka_tls.py`)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from surveillance.clinical.adverse_link import alerts_to_raise
from surveillance.clinical.adverse_redact import WITHHELD, for_table, redacted
from surveillance.clinical.regulatory_clock import obligations
from surveillance.contracts import AdverseEvent, DeadLetter
from surveillance.stream.dlq_seal import DlqKeyError, Sealer, open_letter

KEY = Fernet.generate_key().decode()


def letter(sealer: Sealer, original: bytes) -> DeadLetter:
    return DeadLetter(source_topic="ai.results", source_partition=0, source_offset=7,
                      reason="schema: accession_number: field required",
                      received_at=datetime(2026, 11, 30, tzinfo=UTC),
                      original_b64=sealer.seal(original), original_size=len(original),
                      encryption=sealer.encryption)


@given(st.binary(max_size=4096))
def test_sealed_letters_open_to_the_original_bytes(original: bytes) -> None:
    sealed = letter(Sealer(KEY), original)
    assert sealed.encryption == "fernet"
    assert open_letter(sealed, KEY) == original
    clear = letter(Sealer(""), original)
    assert clear.encryption == "none" and open_letter(clear) == original


def test_a_sealed_letter_shows_no_identifier() -> None:
    original = b'{"patient_id": "MRN-0099123", "accession_number": "ACC-77"}'
    sealed = letter(Sealer(KEY), original).model_dump_json().encode()
    assert b"MRN-0099123" not in sealed and base64.b64encode(original) not in sealed
    assert b"MRN-0099123" in base64.b64decode(letter(Sealer(""), original).original_b64)


def test_wrong_missing_or_malformed_keys_are_clear_errors() -> None:
    sealed = letter(Sealer(KEY), b"x")
    with pytest.raises(DlqKeyError, match="does not open"):
        open_letter(sealed, Fernet.generate_key().decode())
    with pytest.raises(DlqKeyError, match="set SURVEILLANCE_DLQ_ENCRYPTION_KEY"):
        open_letter(sealed)
    with pytest.raises(DlqKeyError, match="not a Fernet key"):
        Sealer("not-a-key")


REPORT = AdverseEvent.model_validate({
    "event_id": "ae-1", "received_at": "2026-11-30T10:00:00+00:00", "aware_date": "2026-11-29",
    "patient": {"patient_id": "p_0123456789abcdef01234567", "age": 71, "sex": "F"},
    "event": {"outcome": "life_threatening", "event_date": "2026-11-28",
              "narrative": "Jane Roe, MRN 00991, DOB 1955-01-02: missed hemorrhage"},
    "device": {"tool_id": "ich-triage", "manufacturer": "Acme", "software_version": "5.2"},
    "reporter": {"name": "Dr Who", "role": "radiologist", "contact": "who@example.org"},
    "accession_number": "a_0123456789abcdef01234567", "ai_output": 0.2, "ai_threshold": 0.5,
    "radiologist_read": "present", "discordance_type": "false_negative", "pseudonymized": True,
})


def test_the_table_keeps_no_narrative_or_reporter_identity() -> None:
    stored = str(for_table(REPORT))
    for secret in ("Jane Roe", "MRN 00991", "1955-01-02", "Dr Who", "who@example.org"):
        assert secret not in stored
    kept = redacted(REPORT)
    assert (kept.event.narrative, kept.reporter.name, kept.reporter.contact) == (WITHHELD,) * 3
    assert kept.reporter.role == "radiologist"
    # Everything else, what linking and the clocks read, is untouched.
    strip = {"event": {"narrative"}, "reporter": {"name", "contact"}}
    assert kept.model_dump(exclude=strip) == REPORT.model_dump(exclude=strip)
    assert AdverseEvent.model_validate(for_table(REPORT)) == kept


def test_the_clocks_raise_the_same_alerts_from_the_redacted_report() -> None:
    now = datetime(2026, 12, 20, 9, tzinfo=UTC)
    for report in (REPORT, redacted(REPORT)):
        assert report.aware_date == date(2026, 11, 29)
    full = alerts_to_raise(REPORT, obligations(REPORT.event.outcome, REPORT.aware_date),
                           now, set())
    kept = alerts_to_raise(redacted(REPORT), obligations(REPORT.event.outcome,
                                                         REPORT.aware_date), now, set())
    assert [a.model_dump() for a in kept] == [a.model_dump() for a in full] and full
