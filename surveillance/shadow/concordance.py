"""Shadow versus vendor: agreement of the two calls, and which was right when they differ.

`ConcordanceWindow` keeps the last `size` re-scored pairs (a count window, so every
snapshot rests on the same n) and reports Cohen's kappa of the two positive calls and
Spearman's rank correlation of the two scores. A falling kappa or rank correlation says the
vendor's model changed behaviour (or its inputs did) before any report is in.

`Arbitration` settles the discordant pairs once the radiologist's read is known: for each
pair where the calls differ and the label is present/absent, exactly one of the two was
right. A case and its shadow score may arrive in either order (discordant cases are
re-scored after adjudication); a corrected report replaces the earlier verdict.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from surveillance.contracts import AdjudicatedCase, Label
from surveillance.shadow.scorer import ShadowScore
from surveillance.stats.agreement import Confusion

V = TypeVar("V")


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two binary calls; None when undefined (a call that never varies).

    One definition of kappa for the whole service: `stats.agreement.Confusion.kappa`, with
    the vendor's call in the rows and the shadow call in the columns.
    """
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two non-empty sequences of the same length")
    x = np.asarray(a, dtype=bool)
    y = np.asarray(b, dtype=bool)
    confusion = Confusion(
        tp=int(np.sum(x & y)),
        fp=int(np.sum(x & ~y)),
        tn=int(np.sum(~x & ~y)),
        fn=int(np.sum(~x & y)),
    )
    return confusion.kappa().value


def average_ranks(values: Sequence[float]) -> npt.NDArray[np.float64]:
    """Ranks 1..n; tied values share the mean of the ranks they span."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start index of each run of equal values, and the run each sorted position belongs to.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson correlation of average ranks; None when either is constant."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("rank correlation needs two sequences of the same length >= 2")
    rx = average_ranks(x) - (len(x) + 1) / 2.0
    ry = average_ranks(y) - (len(y) + 1) / 2.0
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return None if denominator == 0.0 else float(rx @ ry) / denominator


@dataclass(frozen=True)
class ConcordanceSnapshot:
    n: int
    agreement: float
    kappa: float | None  # None while every pair has the same call from both
    spearman: float | None  # None while either score is constant in the window
    discordant: int


class ConcordanceWindow:
    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError(f"window size must be at least 2, got {size}")
        self.size = size
        self._pairs: deque[tuple[float, bool, float, bool]] = deque(maxlen=size)

    def update(self, score: ShadowScore) -> ConcordanceWindow:
        r = score.request
        self._pairs.append((r.vendor_score, r.vendor_positive, score.score, score.positive))
        return self

    def snapshot(self) -> ConcordanceSnapshot | None:
        """None until the window holds two pairs."""
        if len(self._pairs) < 2:
            return None
        vendor_score, vendor_call, shadow_score, shadow_call = zip(*self._pairs, strict=True)
        same = sum(v == s for v, s in zip(vendor_call, shadow_call, strict=True))
        return ConcordanceSnapshot(
            n=len(self._pairs),
            agreement=same / len(self._pairs),
            kappa=cohen_kappa(vendor_call, shadow_call),
            spearman=spearman(vendor_score, shadow_score),
            discordant=len(self._pairs) - same,
        )


class Winner(StrEnum):
    VENDOR = "vendor"
    SHADOW = "shadow"


@dataclass(frozen=True)
class ArbitrationTally:
    vendor_right: int
    shadow_right: int

    @property
    def n(self) -> int:
        return self.vendor_right + self.shadow_right


class Arbitration:
    """Verdicts on the most recent `max_items` discordant pairs (older ones age out)."""

    def __init__(self, max_items: int = 10_000) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.max_items = max_items
        self._vendor_call: OrderedDict[str, bool] = OrderedDict()  # discordant pairs only
        self._truth: OrderedDict[str, bool] = OrderedDict()
        self._verdicts: OrderedDict[str, Winner] = OrderedDict()
        self._revision: OrderedDict[str, int] = OrderedDict()

    def _remember(self, table: OrderedDict[str, V], key: str, value: V) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > self.max_items:
            table.popitem(last=False)

    def _settle(self, key: str) -> Winner | None:
        if key not in self._vendor_call or key not in self._truth:
            return None
        winner = Winner.VENDOR if self._vendor_call[key] == self._truth[key] else Winner.SHADOW
        self._remember(self._verdicts, key, winner)
        return winner

    def record_shadow(self, score: ShadowScore) -> Winner | None:
        if score.positive == score.request.vendor_positive:
            return None
        self._remember(self._vendor_call, score.request.ai_event_id, score.request.vendor_positive)
        return self._settle(score.request.ai_event_id)

    def record_case(self, case: AdjudicatedCase) -> Winner | None:
        key = case.ai_event_id
        if self._revision.get(key, -1) > case.revision:
            return self._verdicts.get(key)  # a redelivered older revision changes nothing
        self._remember(self._revision, key, case.revision)
        if case.label not in (Label.PRESENT, Label.ABSENT):
            # A corrected report may withdraw a label; the earlier verdict no longer holds.
            self._truth.pop(key, None)
            self._verdicts.pop(key, None)
            return None
        self._remember(self._truth, key, case.label == Label.PRESENT)
        return self._settle(key)

    def tally(self) -> ArbitrationTally:
        vendor = sum(w == Winner.VENDOR for w in self._verdicts.values())
        return ArbitrationTally(vendor_right=vendor, shadow_right=len(self._verdicts) - vendor)
