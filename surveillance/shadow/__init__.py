"""ONNX shadow re-scoring of sampled studies: model, DICOM preprocessing, sampling, drift.

Public surface: `ShadowService` (what a stream agent calls), `ShadowSettings`, the model
contract (`ShadowModel`), concordance (`ConcordanceWindow`, `Arbitration`) and embedding
drift (`EmbeddingDriftDetector`). Errors derive from `ShadowError`.
"""

from surveillance.shadow.concordance import Arbitration, ConcordanceSnapshot, ConcordanceWindow
from surveillance.shadow.embedding_drift import EmbeddingDriftDetector, alpha_for
from surveillance.shadow.errors import (
    ImageSourceError,
    ModelContractError,
    RunnerClosedError,
    ShadowError,
)
from surveillance.shadow.model import ShadowModel
from surveillance.shadow.runner import BatchRunner, RunnerStats
from surveillance.shadow.sampler import Reason, Sampler
from surveillance.shadow.scorer import ShadowFailure, ShadowRequest, ShadowScore
from surveillance.shadow.service import ShadowService
from surveillance.shadow.settings import ShadowSettings

__all__ = [
    "Arbitration",
    "BatchRunner",
    "ConcordanceSnapshot",
    "ConcordanceWindow",
    "EmbeddingDriftDetector",
    "ImageSourceError",
    "ModelContractError",
    "Reason",
    "RunnerClosedError",
    "RunnerStats",
    "Sampler",
    "ShadowError",
    "ShadowFailure",
    "ShadowModel",
    "ShadowRequest",
    "ShadowScore",
    "ShadowService",
    "ShadowSettings",
    "alpha_for",
]
