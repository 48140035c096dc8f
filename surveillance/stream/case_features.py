"""Adapter: the AI-result view of an adjudicated case, for the tool-keyed drift bank.

The drift bank reads `AIResult`s; the tool-partitioned stream carries `AdjudicatedCase`s,
which hold every field the bank's features read (scanner, acquisition, demographics,
score, call). Identifiers are the pseudonyms the case already carries; fields the bank
never reads (AI product names, body part) are left empty.

The view is built from the case's `DRIFT_FIELDS` (as the case ledger stores them with the
record), so the live path and a rebuild from the `case_state` table feed the bank the
very same results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from surveillance.clinical.ledger import CaseRecord, drift_features
from surveillance.contracts import Acquisition, AdjudicatedCase, AIResult, Scanner, Sex
from surveillance.contracts.base import trusted
from surveillance.stats.drift_bank import DriftBank, DriftBankConfig
from surveillance.stats.drift_calibration_cache import Calibrations

#: The worker's drift banks. Two days' lateness: within one join partition cases still
#: come a little out of event-time order (a report before its AI result). The clock is
#: not the banks' own: the case agent advances them to the low watermark of the join
#: partitions (`stream.watermark`), so a backlog read partition by partition does not
#: close days early.
WORKER_DRIFT = DriftBankConfig(lateness_days=2, event_clock=False)


def new_bank(
    tool: str, calibrations: Calibrations | None = None, *, calibrate_inline: bool = True
) -> DriftBank:
    return DriftBank.for_tool(tool, WORKER_DRIFT, calibrations, calibrate_inline=calibrate_inline)


def as_ai_result(case: AdjudicatedCase) -> AIResult:
    return ai_result_of(drift_features(case))


def record_ai_result(record: CaseRecord) -> AIResult | None:
    """The drift bank's view of a stored case; None for records stored without features."""
    return None if record.features is None else ai_result_of(record.features)


def rebuild_drift_banks(
    records: Iterable[CaseRecord], make_bank: Callable[[str], DriftBank]
) -> dict[str, DriftBank]:
    """Fresh drift banks fed with the stored cases in event-time order: the reference
    period, calibration, detectors and open windows come back as they were. The replay's
    verdicts were raised when those days first closed, so they are dropped here.

    The replay's clock stops where every source (join partition) has delivered, per
    `cases.adjudicated` partition (as the live clock): in a backlog, some partitions'
    cases are stored days ahead of others', and a day closed on those would take the
    lagging partitions' cases, still to come, as late."""
    ordered = sorted(records, key=lambda r: r.inference_ts)
    reached: dict[int, dict[int | None, float]] = {}
    for record in ordered:
        reached.setdefault(record.partition, {})[record.source] = record.inference_ts
    everyone = {partition: datetime.fromtimestamp(min(by_source.values()), UTC)
                for partition, by_source in reached.items()}
    banks: dict[str, DriftBank] = {}
    for record in ordered:
        result = record_ai_result(record)
        if result is None:
            continue
        bank = banks.get(record.tool)
        if bank is None:
            bank = banks[record.tool] = make_bank(record.tool)
        bank.update(result)
        bank.advance(min(result.inference_date, everyone[record.partition]))
    return banks


_AI_SET = frozenset({
    "event_id", "tool_id", "manufacturer", "model", "software_version", "finding_code",
    "ai_result", "operating_threshold", "result_indicator", "patient_id", "accession_number",
    "study_instance_uid", "study_date", "site", "modality", "body_part_examined",
    "contrast_indication", "scanner", "acquisition", "age", "sex", "inference_date",
    "pseudonymized"})
_SCANNER_SET = frozenset({"manufacturer", "model", "software_version"})
_ACQUISITION_SET = frozenset({"kvp", "slice_thickness", "pixel_spacing", "protocol_name"})


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def ai_result_of(f: Mapping[str, Any]) -> AIResult:
    """The AI result of a case's drift features, built without validation: they were
    validated with the case, and `internal.read_case` refused the cases whose values an
    AI result would not take (`ai_view_bounds`). Validating again cost about 10 us per new
    case, twice the rest of the drift update; `tests/test_case_features.py` checks the
    result equals the validated model on generated cases."""
    return trusted(AIResult, {
        "event_id": f["ai_event_id"], "tool_id": f["tool_id"], "manufacturer": "",
        "model": "", "software_version": f["software_version"], "platform": None,
        "finding_code": f["finding_code"], "ai_result": float(f["ai_result"]),
        "operating_threshold": float(f["operating_threshold"]),
        "result_indicator": f["result_indicator"], "patient_id": f["accession"],
        "accession_number": f["accession"], "study_instance_uid": f["accession"],
        "study_date": date.fromisoformat(f["study_date"]), "site": f["site"],
        "modality": f["modality"], "body_part_examined": "", "exam_name": None,
        "contrast_indication": f["contrast_indication"],
        "scanner": trusted(Scanner, {
            "manufacturer": f["scanner_manufacturer"], "model": f["scanner_model"],
            "software_version": f["scanner_software_version"]}, set(_SCANNER_SET)),
        "acquisition": trusted(Acquisition, {
            "kvp": _float(f["kvp"]), "slice_thickness": _float(f["slice_thickness"]),
            "pixel_spacing": _float(f["pixel_spacing"]),
            "protocol_name": f["protocol_name"]}, set(_ACQUISITION_SET)),
        "age": f["age"], "sex": Sex(f["sex"]),
        "inference_date": datetime.fromisoformat(f["inference_date"]),
        "pseudonymized": True, "measurement": None, "acquired_at": None,
    }, set(_AI_SET))
