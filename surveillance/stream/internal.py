"""The internal topics (`cases.join`, `cases.adjudicated`) read as untrusted input.

Our own join writes them, but anything with access to the broker can too, and one record
the agents cannot take would otherwise stop the worker on every restart (it is re-read
from the same offset). So each record, and the source headers of a case, is checked as
ingest checks input: the contract, the plausible date range, control characters; a bad
one is dead-lettered with the reason (`<topic>.dlq`) and counted, never fatal.

Headers: a case without source headers (a producer other than our join) counts as its
own source at its own AI time (`watermark.UNKNOWN_SOURCE`). Headers that are present but
unreadable, name a join partition that does not exist, or carry an event time outside the
plausible range (a forged `join-ai-watermark: 9999-12-31` would overflow the drift clock,
9999-12-30 would make it close three million days) dead-letter the case: it did not come
from our join, and a forged clock would move every window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from surveillance.contracts import cases, wire
from surveillance.contracts.wire import AdjudicatedCase, JoinInput
from surveillance.stream.ingest import (
    MAX_SITE_CHARS,
    MAX_TOOL_CHARS,
    MAX_VERSION_CHARS,
    DateRange,
    Rejected,
    ai_dates,
    ai_identifiers,
    case_id_too_long,
    control_characters,
    describe,
    too_long,
)
from surveillance.stream.watermark import SOURCE_HEADER, UNKNOWN_SOURCE, WATERMARK_HEADER


def read_join_input(raw: bytes | None, now: datetime, dates: DateRange) -> JoinInput | Rejected:
    """A `cases.join` record: a join input as ingest makes it (pseudonymized), or why not."""
    try:
        item = wire.decode(raw or b"", JoinInput)
    except ValidationError as exc:
        return Rejected("schema", describe(exc))
    if item.ai is not None:
        if not item.ai.pseudonymized:
            return Rejected("schema", "ai.pseudonymized: cases.join carries pseudonyms only")
        ai = item.ai
        return dates.first_outside(ai_dates(ai), now) or control_characters(
            ai_identifiers(ai)) or identifier_lengths(ai.tool_id, ai.software_version, ai.site
                                                      ) or case_id_too_long(
            ai.accession_number, ai.tool_id) or item
    assert item.report is not None
    report = item.report
    return dates.outside("report.finalized_at", report.finalized_at, now) or (
        control_characters([("report.event_id", report.event_id),
                            ("report.accession", report.accession),
                            ("report.site", report.site)])) or too_long(
        [("report.site", report.site, MAX_SITE_CHARS)]) or item


def identifier_lengths(tool: str, version: str, site: str) -> Rejected | None:
    """Ingest refuses longer tool ids and fits longer versions and sites: our join never
    writes longer ones, and the monitor builds ids from them."""
    return too_long([("tool_id", tool, MAX_TOOL_CHARS),
                     ("software_version", version, MAX_VERSION_CHARS),
                     ("site", site, MAX_SITE_CHARS)])


def read_case(
    raw: bytes | None, headers: Any, partitions: int, now: datetime, dates: DateRange
) -> tuple[AdjudicatedCase, int, datetime] | Rejected:
    """A `cases.adjudicated` record: (case, its join partition, the event time that
    partition's AI results had reached), or why it cannot be taken."""
    # msgspec takes the ordinary record (`contracts.wire`: then no string holds a control
    # character); pydantic decides the rest and words the rejection.
    case = wire.fast(raw or b"", AdjudicatedCase)
    screened = case is not None
    if case is None:
        try:
            model = cases.AdjudicatedCase.model_validate_json(raw or b"")
        except ValidationError as exc:
            return Rejected("schema", describe(exc))
        case = wire.from_model(model, AdjudicatedCase)
    why = dates.first_outside(
        [("study_date", case.study_date), ("inference_date", case.inference_date),
         ("labelled_at", case.labelled_at)], now,
    ) or (None if screened else control_characters([
        ("case_id", case.case_id), ("tool_id", case.tool_id),
        ("software_version", case.software_version), ("finding_code", case.finding_code),
        ("site", case.site), ("accession", case.accession), ("modality", case.modality),
        ("ai_event_id", case.ai_event_id), ("report_event_id", case.report_event_id),
        ("scanner_manufacturer", case.scanner_manufacturer),
        ("scanner_model", case.scanner_model),
        ("scanner_software_version", case.scanner_software_version),
        ("protocol_name", case.protocol_name),
    ])) or identifier_lengths(case.tool_id, case.software_version, case.site) or (
        ai_view_bounds(case))
    if why is not None:
        return why
    source = read_source(headers, case.inference_date, partitions, now, dates)
    if isinstance(source, Rejected):
        return source
    return case, *source


#: Fields `AdjudicatedCase` takes more loosely than the AI result the tool's drift bank
#: rebuilds from a case (`stream.case_features`): (name, low, low inclusive, high).
_AI_BOUNDS = (("kvp", 0.0, False, 200.0), ("slice_thickness", 0.0, False, 50.0),
              ("pixel_spacing", 0.0, False, 10.0), ("age", 0, True, 130))


def ai_view_bounds(case: AdjudicatedCase) -> Rejected | None:
    """Why the case's AI-result view would be refused (our join copies these fields from
    a validated AI result, so only a forged or corrupt case gets here): the drift bank
    would fail on it, on every restart."""
    if not 1 <= len(case.modality) <= 16:
        return Rejected("schema", "modality: 1 to 16 characters (as in ai.results)")
    for name, low, inclusive, high in _AI_BOUNDS:
        value = getattr(case, name)
        # `not (... )` also refuses NaN, which fails every comparison.
        if value is not None and not ((low <= value if inclusive else low < value)
                                      and value <= high):
            return Rejected("schema", f"{name}: outside the ai.results bounds "
                            f"({low} to {high})")
    return None


def read_source(
    headers: Any, fallback: datetime, partitions: int, now: datetime, dates: DateRange
) -> tuple[int, datetime] | Rejected:
    """(join partition, event time reached) from a case's headers (a sequence of
    (name, bytes) pairs, as Kafka clients give them); `fallback` when it has none."""
    try:
        found = {str(k): v for k, v in headers or ()}
    except (TypeError, ValueError):
        return Rejected("header", "headers are not (name, value) pairs")
    if SOURCE_HEADER not in found and WATERMARK_HEADER not in found:
        return UNKNOWN_SOURCE, fallback
    try:
        source = int(found[SOURCE_HEADER])
        reached = datetime.fromisoformat(bytes(found[WATERMARK_HEADER]).decode())
    except (KeyError, ValueError, TypeError, UnicodeDecodeError):
        return Rejected("header", f"{SOURCE_HEADER} / {WATERMARK_HEADER} unreadable")
    if not 0 <= source < partitions:
        return Rejected("header", f"{SOURCE_HEADER}: no join partition {source}")
    if reached.tzinfo is None:
        return Rejected("header", f"{WATERMARK_HEADER}: no time zone")
    why = dates.outside(WATERMARK_HEADER, reached, now)
    if why is not None:
        return Rejected("header", why.message)
    return source, reached
