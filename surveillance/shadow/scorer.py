"""Re-score a batch of studies: load images, preprocess, one model call for the batch.

A study whose images cannot be loaded becomes a `ShadowFailure` with a reason, and the rest
of the batch is still scored; only an error of the model itself fails the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from surveillance.contracts import AdjudicatedCase, AIResult
from surveillance.shadow.dicom_source import ImageSource
from surveillance.shadow.errors import ImageSourceError
from surveillance.shadow.model import ShadowModel
from surveillance.shadow.preprocess import preprocess_study
from surveillance.shadow.sampler import Reason


@dataclass(frozen=True)
class ShadowRequest:
    """What the shadow model needs to re-score one AI result, with pseudonymized ids only."""

    ai_event_id: str
    tool_id: str
    software_version: str
    site: str
    accession: str
    vendor_score: float
    vendor_positive: bool
    reason: Reason

    @classmethod
    def from_result(cls, result: AIResult, reason: Reason) -> ShadowRequest:
        return cls(
            ai_event_id=result.event_id,
            tool_id=result.tool_id,
            software_version=result.software_version,
            site=result.site,
            accession=result.accession_number,
            vendor_score=result.ai_result,
            vendor_positive=result.result_indicator,
            reason=reason,
        )

    @classmethod
    def from_case(cls, case: AdjudicatedCase, reason: Reason) -> ShadowRequest:
        return cls(
            ai_event_id=case.ai_event_id,
            tool_id=case.tool_id,
            software_version=case.software_version,
            site=case.site,
            accession=case.accession,
            vendor_score=case.ai_result,
            vendor_positive=case.result_indicator,
            reason=reason,
        )


@dataclass(frozen=True)
class ShadowScore:
    request: ShadowRequest
    score: float
    positive: bool
    embedding: tuple[float, ...]
    model_digest: str


@dataclass(frozen=True)
class ShadowFailure:
    request: ShadowRequest
    reason: str


class ShadowScorer:
    def __init__(self, source: ImageSource, model: ShadowModel, threshold: float) -> None:
        self._source = source
        self._model = model
        self._threshold = threshold

    def __call__(self, batch: Sequence[ShadowRequest]) -> list[ShadowScore | ShadowFailure]:
        out: list[ShadowScore | ShadowFailure | None] = [None] * len(batch)
        images = []
        loaded = []
        for i, request in enumerate(batch):
            try:
                images.append(preprocess_study(self._source.load(request.accession)))
            except ImageSourceError as exc:
                out[i] = ShadowFailure(request, str(exc))
            else:
                loaded.append(i)
        if loaded:
            prediction = self._model.predict(np.stack(images).astype(np.float32))
            for j, i in enumerate(loaded):
                score = float(prediction.scores[j])
                out[i] = ShadowScore(
                    request=batch[i],
                    score=score,
                    positive=score >= self._threshold,
                    embedding=tuple(float(v) for v in prediction.embeddings[j]),
                    model_digest=self._model.digest,
                )
        return [o for o in out if o is not None]
