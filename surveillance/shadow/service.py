"""Shadow re-scoring as one object a stream agent can call without ever waiting.

Wiring (the agent stays thin)::

    service = ShadowService.start(settings.shadow, sink=on_scored)
    async for result in ai_results.stream():     # every ai.results event
        service.offer_result(result)              # returns at once
    async for case in adjudicated.stream():      # every cases.adjudicated event
        service.offer_case(case)

`sink(requests, outcomes)` runs on the runner's worker thread; to get back onto the event
loop use `loop.call_soon_threadsafe`. `stats()` gives the counts for Prometheus
(`submitted`, `shed`, `processed`, `failed`, `queued`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from surveillance.contracts import AdjudicatedCase, AIResult
from surveillance.shadow.dicom_source import FolderDicomSource, ImageSource
from surveillance.shadow.model import ShadowModel
from surveillance.shadow.runner import BatchRunner, RunnerStats
from surveillance.shadow.sampler import Reason, Sampler
from surveillance.shadow.scorer import ShadowFailure, ShadowRequest, ShadowScore, ShadowScorer
from surveillance.shadow.settings import ShadowSettings

Outcome = ShadowScore | ShadowFailure
Sink = Callable[[Sequence[ShadowRequest], Sequence[Outcome]], None]


class ShadowService:
    def __init__(self, sampler: Sampler, runner: BatchRunner[ShadowRequest, Outcome]) -> None:
        self._sampler = sampler
        self._runner = runner

    @classmethod
    def start(
        cls, settings: ShadowSettings, sink: Sink, source: ImageSource | None = None
    ) -> ShadowService:
        """Load and check the model, index nothing yet, start the worker thread."""
        model = ShadowModel.load(settings.model_path, settings.intra_op_threads)
        scorer = ShadowScorer(
            source or FolderDicomSource(settings.image_folder), model, settings.shadow_threshold
        )
        runner: BatchRunner[ShadowRequest, Outcome] = BatchRunner(
            scorer,
            sink,
            queue_size=settings.queue_size,
            batch_size=settings.batch_size,
            priority_queue_size=settings.priority_queue_size,
        )
        return cls(Sampler(settings.sample_fraction, settings.sample_salt), runner)

    def offer_result(self, result: AIResult) -> Reason | None:
        """Queue the result if it is in the sample; the reason when queued.

        None when it is not in the sample or was shed (counted in `stats().shed`).
        """
        reason = self._sampler.for_result(result)
        if reason is None:
            return None
        return reason if self._runner.submit(ShadowRequest.from_result(result, reason)) else None

    def offer_case(self, case: AdjudicatedCase) -> Reason | None:
        """Queue a discordant case in the priority lane; the reason when queued, else None."""
        reason = self._sampler.for_case(case)
        if reason is None:
            return None
        request = ShadowRequest.from_case(case, reason)
        return reason if self._runner.submit(request, priority=True) else None

    def stats(self) -> RunnerStats:
        return self._runner.stats()

    def close(self, drain: bool = True, timeout: float | None = None) -> RunnerStats:
        return self._runner.close(drain, timeout)
