"""Seeded, realistic events for the store and export tests and benchmarks.

Independent of surveillance/simulate on purpose: these tests must not move when the
simulator does. Cases follow each tool's clearance sensitivity/specificity at a plausible
prevalence, across sites, scanners, sexes and ages, with a mid-quarter version change,
some pending/unlabelled/indeterminate cases, and corrected reports (higher revisions).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import numpy as np

from surveillance.contracts import (
    AdjudicatedCase,
    AdverseEvent,
    Alert,
    MetricSnapshot,
)
from surveillance.privacy import pseudonymize

KEY = b"store-test-key"
SITES = ("site-a", "site-b", "site-c")
SCANNERS = (("GE", "Revolution"), ("SIEMENS", "SOMATOM Force"), ("PHILIPS", "iCT"))
TOOLS = {
    # tool: (finding, modality, prevalence, sensitivity, specificity)
    "ich-triage": ("intracranial_hemorrhage", "CT", 0.08, 0.93, 0.97),
    "lvo-triage": ("large_vessel_occlusion", "CT", 0.05, 0.64, 0.95),
    "ptx-triage": ("pneumothorax", "DX", 0.04, 0.92, 0.97),
    "dr-screen": ("mtm_diabetic_retinopathy", "OP", 0.20, 0.87, 0.90),
}


def _uid(rng: np.random.Generator) -> str:
    return uuid.UUID(bytes=rng.bytes(16), version=4).hex


def make_cases(
    seed: int, n: int, tool: str, start: date, days: int, versions: tuple[str, ...] = ("1.0", "1.1")
) -> list[AdjudicatedCase]:
    """`n` cases of `tool` with study dates in [start, start + days), revision 0."""
    finding, modality, prevalence, sens, spec = TOOLS[tool]
    rng = np.random.default_rng(seed)
    present = rng.random(n) < prevalence
    positive = np.where(present, rng.random(n) < sens, rng.random(n) >= spec)
    score = np.where(positive, 0.5 + 0.5 * rng.random(n), 0.5 * rng.random(n))
    day = rng.integers(0, days, n)
    state = rng.random(n)  # ~4% pending, 2% unlabelled, 1% indeterminate
    site = rng.integers(0, len(SITES), n)
    scanner = rng.integers(0, len(SCANNERS), n)
    sex = rng.choice(np.array(["F", "M", "U"]), n, p=[0.49, 0.49, 0.02])
    age = rng.integers(1, 96, n)
    age_missing = rng.random(n) < 0.02
    cases = []
    for i in range(n):
        study = start + timedelta(days=int(day[i]))
        inferred = datetime(study.year, study.month, study.day, tzinfo=UTC) + timedelta(
            minutes=int(rng.integers(0, 1440))
        )
        version = versions[0] if day[i] < days // 2 else versions[-1]
        if state[i] < 0.04:
            outcome, label = "pending", None
        elif state[i] < 0.06:
            outcome, label = "unlabelled", None
        elif state[i] < 0.07:
            outcome, label = "indeterminate", "indeterminate"
        else:
            label = "present" if present[i] else "absent"
            outcome = {
                (True, True): "TP",
                (True, False): "FP",
                (False, True): "FN",
                (False, False): "TN",
            }[(bool(positive[i]), bool(present[i]))]
        event = _uid(rng)
        accession = pseudonymize(KEY, "accession", f"ACC{seed}-{i}")
        cases.append(
            AdjudicatedCase(
                case_id=f"{tool}:{accession}",
                revision=0,
                outcome=outcome,
                label=label,
                label_status="final" if label else None,
                tool_id=tool,
                software_version=version,
                finding_code=finding,
                site=SITES[site[i]],
                ai_result=float(score[i]),
                operating_threshold=0.5,
                result_indicator=bool(positive[i]),
                accession=accession,
                study_date=study,
                inference_date=inferred,
                labelled_at=inferred + timedelta(hours=2) if label else None,
                modality=modality,
                scanner_manufacturer=SCANNERS[scanner[i]][0],
                scanner_model=SCANNERS[scanner[i]][1],
                scanner_software_version="VB20",
                protocol_name="ROUTINE",
                age=None if age_missing[i] else int(age[i]),
                sex=str(sex[i]),
                ai_event_id=f"ai-{event}",
                report_event_id=f"rp-{event}" if label else None,
            )
        )
    return cases


def corrected(case: AdjudicatedCase, revision: int) -> AdjudicatedCase:
    """The same case with its label flipped by a corrected report, as `revision`."""
    label = "absent" if case.label == "present" else "present"
    outcome = {
        (True, "present"): "TP",
        (True, "absent"): "FP",
        (False, "present"): "FN",
        (False, "absent"): "TN",
    }[(case.result_indicator, label)]
    return AdjudicatedCase.model_validate(
        {
            **case.model_dump(),
            "revision": revision,
            "label": label,
            "outcome": outcome,
            "label_status": "corrected",
            "report_event_id": f"{case.report_event_id}-r{revision}",
        }
    )


def make_alerts(tool: str, start: date) -> list[Alert]:
    t0 = datetime(start.year, start.month, start.day, 8, tzinfo=UTC)
    raised = Alert(
        alert_id=f"{tool}-al-1",
        kind="input_drift",
        severity="warning",
        raised_at=t0 + timedelta(days=20),
        tool_id=tool,
        metric="scanner_manufacturer",
        value=0.31,
        summary="scanner mix shifted at site-b (PSI 0.31 vs 0.2)",
        details={"detector": "psi"},
    )
    cusum = Alert(
        alert_id=f"{tool}-al-2",
        kind="cusum_signal",
        severity="critical",
        raised_at=t0 + timedelta(days=50),
        tool_id=tool,
        software_version="1.1",
        metric="sensitivity",
        value=0.81,
        interval=(0.74, 0.87),
        baseline=0.93,
        n=120,
        summary="sensitivity CUSUM crossed h",
    )
    resolve = Alert(
        alert_id=f"{tool}-al-3",
        kind="input_drift",
        severity="info",
        raised_at=t0 + timedelta(days=27),
        tool_id=tool,
        metric="scanner_manufacturer",
        summary="scanner mix back within reference",
        details={"resolves": f"{tool}-al-1"},
    )
    return [raised, cusum, resolve]


def make_snapshots(tool: str, start: date, n: int) -> list[MetricSnapshot]:
    t0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
    out = []
    for i in range(n):
        out.append(
            MetricSnapshot(
                snapshot_id=f"{tool}-snap-{i}",
                kind="drift" if i % 3 == 0 else "agreement",
                at=t0 + timedelta(hours=12 * i),
                tool_id=tool,
                metric="ai_result" if i % 3 == 0 else "sensitivity",
                detector="adwin" if i % 3 == 0 else None,
                window="7d",
                value=0.1 + (i % 7) / 100,
                subgroup={"site": SITES[i % 3]},
                n=100 + i,
            )
        )
    return out


def make_adverse_events(tool: str, start: date) -> list[AdverseEvent]:
    events = []
    for i, outcome in enumerate(("death", "hospitalization", "non_serious")):
        aware = start + timedelta(days=10 + 20 * i)
        events.append(
            AdverseEvent(
                event_id=f"{tool}-ae-{i}",
                received_at=datetime(aware.year, aware.month, aware.day, 9, tzinfo=UTC),
                aware_date=aware,
                patient={
                    "patient_id": pseudonymize(KEY, "patient", f"P{i}"),
                    "age": 70,
                    "sex": "F",
                },
                event={
                    "outcome": outcome,
                    "event_date": aware - timedelta(days=1),
                    "narrative": "missed finding on triage list",
                },
                device={"tool_id": tool, "manufacturer": "RapidAI", "software_version": "1.1"},
                reporter={"name": "Dr X", "role": "radiologist", "contact": "x@example.org"},
                accession_number=pseudonymize(KEY, "accession", f"AE{i}"),
                ai_output=0.2,
                ai_threshold=0.5,
                radiologist_read="present",
                discordance_type="false_negative",
                pseudonymized=True,
            )
        )
    return events
