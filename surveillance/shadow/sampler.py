"""Which AI results are re-scored by the shadow model.

Two reasons to re-score: a uniform random `fraction` of all `ai.results` (an unbiased sample
for concordance and embedding drift), and every discordant case (the vendor's call disagreed
with the radiologist: FP or FN in `cases.adjudicated`), because those are the ones a
governance committee asks about.

The random draw is a keyed hash of the event id, not a random number generator, so a
redelivered event (processing is at-least-once) gets the same decision, and a discordant
case whose result was already sampled is not re-scored twice. A case re-emitted with a
higher revision is discordant again; shadow scores are keyed by the AI event id, so
re-scoring it overwrites the same record rather than adding one.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from surveillance.contracts import AdjudicatedCase, AIResult, CaseOutcome

_DISCORDANT = frozenset({CaseOutcome.FP, CaseOutcome.FN})


class Reason(StrEnum):
    SAMPLED = "sampled"
    DISCORDANT = "discordant"


def sample_point(event_id: str, salt: str) -> float:
    """A number in [0, 1) that is uniform over event ids and fixed for one id."""
    digest = hashlib.sha256(f"{salt}\0{event_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Sampler:
    def __init__(self, fraction: float, salt: str) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        self.fraction = fraction
        self.salt = salt

    def in_sample(self, ai_event_id: str) -> bool:
        return sample_point(ai_event_id, self.salt) < self.fraction

    def for_result(self, result: AIResult) -> Reason | None:
        """Re-score this result now? (called on every `ai.results` event)"""
        return Reason.SAMPLED if self.in_sample(result.event_id) else None

    def for_case(self, case: AdjudicatedCase) -> Reason | None:
        """Re-score this case now? Discordant, and not already re-scored as part of the sample."""
        if case.outcome in _DISCORDANT and not self.in_sample(case.ai_event_id):
            return Reason.DISCORDANT
        return None
