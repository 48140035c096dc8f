"""What the worker's ingest would dead-letter in a report, checked where the report comes
in (HL7, FHIR), so that the sender is told (AE, 422) instead of getting an acceptance for
a report that then becomes a dead letter. Pure; reasons name fields, never values."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

from surveillance.contracts import ReportFinal
from surveillance.stream.ingest import DateRange, control_characters


def identifier_problem(report: ReportFinal) -> str | None:
    """Why an identifier of `report` would be refused (a control character, e.g. a
    hex-escaped CR in an accession number), or None."""
    if (report.accession_number + (report.patient_id or "") + report.site).isprintable():
        return None  # the usual case, in one scan; isprintable() is False for every control
    why = control_characters([("accession_number", report.accession_number),
                              ("patient_id", report.patient_id), ("site", report.site)])
    return None if why is None else why.message


def time_problem(name: str, value: datetime, now: datetime, earliest: date | None) -> str | None:
    """Why the event time `value` (field `name`) would be refused: before `earliest`
    (`stream.earliest_event_date`; None: its default) or over an hour after `now`."""
    why = _dates(earliest).outside(name, value, now)
    return None if why is None else why.message


@lru_cache(maxsize=4)
def _dates(earliest: date | None) -> DateRange:
    return DateRange() if earliest is None else DateRange(earliest)
