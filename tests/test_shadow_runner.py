"""Load shedding of the batch runner, the sampler, and the service wired end to end."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from scipy.stats import binom

from surveillance.contracts import (
    AdjudicatedCase,
    AIResult,
    CaseOutcome,
    Label,
    Scanner,
)
from surveillance.shadow.build_reference_model import build_reference_model
from surveillance.shadow.errors import RunnerClosedError
from surveillance.shadow.runner import BatchRunner
from surveillance.shadow.sampler import Reason, Sampler, sample_point
from surveillance.shadow.scorer import ShadowFailure, ShadowRequest, ShadowScore
from surveillance.shadow.service import Outcome, ShadowService
from surveillance.shadow.settings import ShadowSettings
from surveillance.shadow.synthetic_studies import synthesize_dataset, write_dataset


class Gate:
    """A batch function that holds the worker until released: an arbitrarily slow model."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def __call__(self, batch: Sequence[int]) -> list[int]:
        self.entered.set()
        assert self.release.wait(60), "test never released the gate"
        return [x * 2 for x in batch]


def test_overload_sheds_and_counts_every_item_without_blocking_the_caller() -> None:
    gate = Gate()
    received: list[tuple[int, int]] = []

    def sink(items: Sequence[int], results: Sequence[int]) -> None:
        received.extend(zip(items, results, strict=True))

    runner: BatchRunner[int, int] = BatchRunner(gate, sink, queue_size=100, batch_size=16)
    accepted: list[int] = []

    def main_stream() -> None:
        for i in range(10_000):
            if runner.submit(i):
                accepted.append(i)

    # The model is blocked for the whole loop: if submit ever waited for capacity, the
    # stream thread could not finish before the gate opens.
    stream = threading.Thread(target=main_stream)
    stream.start()
    stream.join(60)
    assert not stream.is_alive()
    during = runner.stats()
    assert during.submitted == 10_000
    assert during.processed == 0
    assert during.shed >= 10_000 - 100 - 16
    assert during.shed == 10_000 - len(accepted)

    gate.release.set()
    final = runner.close(drain=True, timeout=60)
    assert final.shed + final.processed == final.submitted == 10_000
    assert final.failed == 0 and final.queued == 0
    assert received == [(i, 2 * i) for i in accepted]


def test_priority_lane_is_served_first_and_sheds_separately() -> None:
    gate = Gate()
    batches: list[list[int]] = []
    runner: BatchRunner[int, int] = BatchRunner(
        gate,
        lambda items, _: batches.append(list(items)),
        queue_size=3,
        batch_size=4,
        priority_queue_size=2,
    )
    runner.submit(0)
    assert gate.entered.wait(60)  # the worker holds item 0; the queues are empty again
    assert [runner.submit(i) for i in (1, 2, 3, 4)] == [True, True, True, False]
    assert [runner.submit(i, priority=True) for i in (100, 101, 102)] == [True, True, False]
    gate.release.set()
    stats = runner.close(timeout=60)
    assert batches == [[0], [100, 101, 1, 2], [3]]
    assert (stats.submitted, stats.shed, stats.processed) == (8, 2, 6)


def test_a_failing_batch_is_counted_and_the_worker_carries_on() -> None:
    def flaky(batch: Sequence[int]) -> list[int]:
        if 13 in batch:
            raise RuntimeError("model crashed")
        return list(batch)

    seen: list[int] = []
    runner: BatchRunner[int, int] = BatchRunner(
        flaky, lambda items, _: seen.extend(items), queue_size=100, batch_size=1
    )
    for i in range(20):
        runner.submit(i)
    stats = runner.close(timeout=60)
    assert (stats.processed, stats.failed, stats.shed) == (19, 1, 0)
    assert seen == [i for i in range(20) if i != 13]


def test_close_without_drain_sheds_the_queue_and_refuses_new_items() -> None:
    gate = Gate()
    runner: BatchRunner[int, int] = BatchRunner(gate, lambda *_: None, queue_size=10, batch_size=1)
    runner.submit(0)
    assert gate.entered.wait(60)
    for i in range(1, 6):
        runner.submit(i)
    gate.release.set()
    stats = runner.close(drain=False, timeout=60)
    assert (stats.submitted, stats.processed, stats.shed, stats.queued) == (6, 1, 5, 0)
    with pytest.raises(RunnerClosedError, match="closed"):
        runner.submit(7)
    with pytest.raises(ValueError, match="at least 1"):
        BatchRunner(gate, lambda *_: None, queue_size=0, batch_size=1)


def test_sample_fraction_is_binomial_and_repeatable() -> None:
    sampler = Sampler(0.1, salt="s")
    ids = [f"event-{i}" for i in range(20_000)]
    picked = [i for i in ids if sampler.in_sample(i)]
    low, high = binom.ppf([0.0005, 0.9995], 20_000, 0.1)
    assert low <= len(picked) <= high
    assert picked == [i for i in ids if Sampler(0.1, salt="s").in_sample(i)]
    assert picked != [i for i in ids if Sampler(0.1, salt="other").in_sample(i)]
    assert all(0.0 <= sample_point(i, "s") < 1.0 for i in ids[:100])
    assert not any(Sampler(0.0, "s").in_sample(i) for i in ids)
    assert all(Sampler(1.0, "s").in_sample(i) for i in ids)
    with pytest.raises(ValueError, match="fraction"):
        Sampler(1.5, "s")


def _result(i: int, accession: str, version: str = "1.0") -> AIResult:
    return AIResult(
        event_id=f"ai-{i}",
        tool_id="ich-triage",
        manufacturer="RapidAI",
        model="Rapid ICH",
        software_version=version,
        finding_code="intracranial_hemorrhage",
        ai_result=0.7 if i % 2 else 0.2,
        operating_threshold=0.5,
        result_indicator=bool(i % 2),
        patient_id=f"p-{i}",
        accession_number=accession,
        study_instance_uid=f"1.2.3.{i}",
        study_date=date(2025, 1, 2),
        site="site-a",
        modality="CT",
        body_part_examined="HEAD",
        scanner=Scanner(manufacturer="GE", model="Revolution", software_version="1"),
        inference_date=datetime(2025, 1, 2, 10, tzinfo=UTC),
    )


def _case(result: AIResult, outcome: CaseOutcome) -> AdjudicatedCase:
    positive_read = outcome in (CaseOutcome.TP, CaseOutcome.FN)
    return AdjudicatedCase(
        case_id=f"case-{result.event_id}",
        revision=0,
        outcome=outcome,
        label=Label.PRESENT if positive_read else Label.ABSENT,
        tool_id=result.tool_id,
        software_version=result.software_version,
        finding_code=result.finding_code,
        site=result.site,
        ai_result=result.ai_result,
        operating_threshold=result.operating_threshold,
        result_indicator=result.result_indicator,
        accession=result.accession_number,
        study_date=result.study_date,
        inference_date=result.inference_date,
        modality="CT",
        scanner_manufacturer="GE",
        scanner_model="Revolution",
        scanner_software_version="1",
        ai_event_id=result.event_id,
    )


def test_sampler_takes_every_discordant_case_once() -> None:
    sampler = Sampler(0.5, salt="s")
    results = [_result(i, f"A{i}") for i in range(200)]
    in_sample = {r.event_id for r in results if sampler.for_result(r) == Reason.SAMPLED}
    for r in results:
        for outcome in CaseOutcome:
            decision = sampler.for_case(_case(r, outcome))
            discordant = outcome in (CaseOutcome.FP, CaseOutcome.FN)
            expected = Reason.DISCORDANT if discordant and r.event_id not in in_sample else None
            assert decision == expected


def test_service_rescores_sampled_results_and_discordant_cases(tmp_path: Path) -> None:
    studies = synthesize_dataset(seed=31, n_studies=12)
    write_dataset(studies, tmp_path / "dicom")
    model_path = tmp_path / "model.onnx"
    model_path.write_bytes(build_reference_model(seed=0, n_train=200))
    settings = ShadowSettings(
        model_path=model_path,
        image_folder=tmp_path / "dicom",
        sample_fraction=0.5,
        sample_salt="t",
        batch_size=4,
    )
    outcomes: list[Outcome] = []
    done = threading.Lock()

    def sink(requests: Sequence[ShadowRequest], results: Sequence[Outcome]) -> None:
        with done:
            outcomes.extend(results)

    service = ShadowService.start(settings, sink)
    results = [_result(i, s.accession) for i, s in enumerate(studies)]
    sampled = [r.event_id for r in results if service.offer_result(r) == Reason.SAMPLED]
    cases = [
        _case(r, CaseOutcome.FN if i % 3 == 0 else CaseOutcome.TN) for i, r in enumerate(results)
    ]
    discordant = [c.ai_event_id for c in cases if service.offer_case(c) == Reason.DISCORDANT]
    # A sampled result whose study was never exported becomes a failure with a reason.
    missing = next(
        _result(i, "NOT-EXPORTED")
        for i in range(100, 200)
        if Sampler(0.5, "t").in_sample(f"ai-{i}")
    )
    assert service.offer_result(missing) == Reason.SAMPLED
    stats = service.close(timeout=60)

    expected = {*sampled, *discordant, missing.event_id}
    assert sampled and discordant
    assert not set(sampled) & set(discordant)
    assert {o.request.ai_event_id for o in outcomes} == expected
    assert (stats.processed, stats.shed, stats.failed) == (len(expected), 0, 0)
    for o in outcomes:
        if o.request.ai_event_id == missing.event_id:
            assert isinstance(o, ShadowFailure) and "no DICOM study" in o.reason
        else:
            assert isinstance(o, ShadowScore) and len(o.embedding) == 16
