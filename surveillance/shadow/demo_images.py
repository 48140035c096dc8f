"""Images for the demo's shadow re-scoring: synthetic head-CT DICOM studies for simulated results.

The simulator emits AI results and reports but no pixels. For the studies of the shadowed
finding (intracranial hemorrhage: the finding the reference shadow model detects) this
writes one synthetic study per accession (`synthetic_studies`), with the RAW accession in
the DICOM AccessionNumber, as a PACS export would have it; the shadow process indexes the
folder by the keyed HMAC of that header value, so it matches the pseudonymized accession
of `cases.adjudicated`.

Which studies: a seeded random `fraction` of the accessions, plus (by default) every
accession whose vendor call the simulator's report contradicts, so the priority lane has
images to re-score. Lesion or not: the simulator's truth for the study, i.e. the label of
the study's last report by finalization time (corrections fix misreads, so that is the
true label); only when no report in the stream gives a present/absent label does the
vendor's call at its operating threshold (`result_indicator`) decide.

Usage: ``python -m surveillance.shadow.demo_images --days 10 --out demo-images``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from surveillance.clinical.labels import extract_label
from surveillance.contracts import AIResult, Label, ReportFinal
from surveillance.shadow.build_reference_model import build_reference_model
from surveillance.shadow.synthetic_studies import synthesize_study, write_study
from surveillance.simulate.events import SimEvent
from surveillance.stream.topics import AI_RESULTS, REPORTS_FINAL

#: The finding of the reference shadow model (`build_reference_model`).
SHADOW_FINDING = "intracranial_hemorrhage"


@dataclass(frozen=True)
class DemoStudy:
    accession: str  # raw, as in the simulator's events
    positive: bool
    from_report: bool  # False: no present/absent report, the vendor's call decided
    vendor_positive: bool


def report_labels(events: list[SimEvent], finding_code: str) -> dict[str, Label]:
    """Raw accession -> label of its last report (by finalization time) for the finding."""
    latest: dict[str, tuple[datetime, Label]] = {}
    for event in events:
        if event.topic != REPORTS_FINAL or not event.valid:
            continue
        report = ReportFinal.model_validate_json(event.value)
        if report.findings is not None:
            found = {f.finding_code: f.label for f in report.findings}
            if finding_code not in found:
                continue
            label = found[finding_code]
        else:
            assert report.report_text is not None
            label = extract_label(report.report_text, finding_code)
        at = report.finalized_at
        previous = latest.get(report.accession_number)
        if previous is None or at >= previous[0]:
            latest[report.accession_number] = (at, label)
    return {accession: label for accession, (_, label) in latest.items()}


def demo_studies(events: list[SimEvent], finding_code: str = SHADOW_FINDING) -> list[DemoStudy]:
    """One entry per accession with an AI result for the finding, in order of first result."""
    labels = report_labels(events, finding_code)
    studies: dict[str, DemoStudy] = {}
    for event in events:
        if event.topic != AI_RESULTS or not event.valid:
            continue
        data = json.loads(event.value)
        if data.get("finding_code") != finding_code:
            continue
        result = AIResult.model_validate(data)
        accession = result.accession_number
        if accession in studies:
            continue
        label = labels.get(accession)
        known = label in (Label.PRESENT, Label.ABSENT)
        studies[accession] = DemoStudy(
            accession=accession,
            positive=label == Label.PRESENT if known else result.result_indicator,
            from_report=known,
            vendor_positive=result.result_indicator,
        )
    return list(studies.values())


def select_studies(
    studies: list[DemoStudy], fraction: float, seed: int, include_discordant: bool = True
) -> list[tuple[int, DemoStudy]]:
    """(index, study) for the seeded sample plus the discordant studies."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    draws = np.random.default_rng(seed).random(len(studies))
    return [
        (i, s)
        for i, s in enumerate(studies)
        if draws[i] < fraction
        or (include_discordant and s.from_report and s.positive != s.vendor_positive)
    ]


def ensure_reference_model(path: Path, seed: int = 0) -> bool:
    """Build the reference ONNX model at `path` unless a file is there; True if built."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_reference_model(seed))
    return True


def write_demo_studies(
    events: list[SimEvent],
    out_dir: Path,
    fraction: float,
    seed: int,
    *,
    finding_code: str = SHADOW_FINDING,
    include_discordant: bool = True,
    model_path: Path | None = None,
) -> int:
    """Write the selected studies under `out_dir`; the number of studies written.

    With `model_path`, also build the reference shadow model there if it is absent. Each
    study's pixels come from its own seed (`seed`, index), so the selection does not change
    any study's images.
    """
    if model_path is not None:
        ensure_reference_model(model_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = select_studies(demo_studies(events, finding_code), fraction, seed,
                            include_discordant)
    for index, study in chosen:
        rng = np.random.default_rng([seed, index])
        write_study(synthesize_study(rng, study.positive, study.accession), out_dir)
    return len(chosen)


def main(argv: list[str] | None = None) -> None:
    from surveillance.simulate import simulate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--sim-seed", type=int, default=7)
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    events, _ = simulate(days=args.days, seed=args.sim_seed)
    n = write_demo_studies(events, args.out, args.fraction, args.seed, model_path=args.model)
    print(f"wrote {n} synthetic studies under {args.out}")


if __name__ == "__main__":
    main()
