"""Shadow scores and adjudicated cases in, shadow snapshots and alerts out (pure, no I/O).

Per tool, only the *sampled* lane feeds concordance and embedding drift: the priority lane
is chosen because the vendor disagreed with the report, so it is enriched for vendor errors
and would bias both kappa and the embedding distribution. Both lanes feed `Arbitration`
(which of the two calls the report proved right on the studies where they differed).

Reference and windows: the first `reference_pairs` sampled pairs of a tool after start are
its reference (the process keeps no state across restarts: at-most-once); after that, every
`window` sampled pairs close a tumbling window. Each closed window is tested once, so tests
are independent and the per-window level is the false-alarm probability per window.

How the kappa alert level is calibrated: the reference pairs give the 2 x 2 table of
vendor call x shadow call; with a Jeffreys pseudo-count of 1/2 per cell these are the cell
probabilities of a stable stream. The level is the lower `alpha`-quantile of Cohen's kappa
over `window` pairs drawn from that multinomial (`kappa_alert_level`, a seeded parametric
bootstrap), so on a stable stream P(window kappa < level) <= alpha. `alpha` is set from a
false-alarm budget: `alpha_for(false_alarms_per_year, windows_per_day)`, with the window
rate measured in event time over the reference period, clipped to [MIN_ALPHA, MAX_ALPHA].
The embedding-drift test (MMD permutation test against the reference embeddings) uses the
same alpha. The uncertainty of the reference estimate itself is not propagated: keep
`reference_pairs` at several hundred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from surveillance.contracts import AdjudicatedCase, Alert, AlertSeverity, MetricSnapshot
from surveillance.shadow.concordance import Arbitration, ConcordanceWindow
from surveillance.shadow.embedding_drift import EmbeddingDriftDetector, alpha_for
from surveillance.shadow.sampler import Reason
from surveillance.shadow.scorer import ShadowScore
from surveillance.stats.agreement import Confusion

MIN_ALPHA = 1e-3
MAX_ALPHA = 0.05
#: Monte Carlo draws for the kappa level: the alpha-quantile's error is well under one atom.
LEVEL_DRAWS = 40_000
#: A reference spanning less event time than this is treated as spanning this much.
MIN_SPAN_DAYS = 1.0 / 24.0

Message = MetricSnapshot | Alert


class ShadowVerdictSettings(BaseModel):
    """Windows and false-alarm budget of shadow concordance and embedding-drift alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference_pairs: int = Field(default=400, ge=20, le=100_000)
    window: int = Field(default=100, ge=5, le=100_000)
    false_alarms_per_year: float = Field(default=1.0, gt=0.0, le=365.0)
    seed: int = 0

    @model_validator(mode="after")
    def _aligned(self) -> ShadowVerdictSettings:
        # Drift tests start after the reference; alignment makes them close with the windows.
        if self.reference_pairs % self.window:
            raise ValueError("reference_pairs must be a multiple of window")
        return self


def batch_kappa(cells: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Cohen's kappa of rows (tp, fp, fn, tn); 1.0 where both raters used one category only.

    Kappa is 0/0 there; both raters agree on every pair, which is no evidence of discordance.
    """
    tp, fp, fn, tn = (cells[:, i].astype(np.float64) for i in range(4))
    n = tp + fp + fn + tn
    observed = (tp + tn) / n
    expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    degenerate = (tp == n) | (tn == n)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (observed - expected) / (1.0 - expected)
    out: npt.NDArray[np.float64] = np.where(degenerate, 1.0, kappa)
    return out


def kappa_alert_level(
    reference: tuple[int, int, int, int], window: int, alpha: float, rng: np.random.Generator
) -> float:
    """Lower alpha-quantile of window kappa under the reference (tp, fp, fn, tn) table."""
    counts = np.asarray(reference, dtype=np.float64) + 0.5
    draws = rng.multinomial(window, counts / counts.sum(), size=LEVEL_DRAWS)
    return float(np.quantile(batch_kappa(draws), alpha, method="inverted_cdf"))


@dataclass
class _Reference:
    cells: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    embeddings: list[tuple[float, ...]] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class _Calibration:
    expected_kappa: float | None
    level: float
    alpha: float
    detector: EmbeddingDriftDetector


@dataclass
class _Tool:
    window: ConcordanceWindow
    reference: _Reference = field(default_factory=_Reference)
    calibration: _Calibration | None = None
    cells: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # current window
    since: datetime | None = None
    latest: datetime | None = None
    pairs: int = 0
    total: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # since start


def _cell(vendor: bool, shadow: bool) -> int:
    """Index in (tp, fp, fn, tn) with the vendor in the rows, the shadow in the columns."""
    return (0 if shadow else 1) if vendor else (2 if shadow else 3)


def _confusion(cells: list[int]) -> Confusion:
    return Confusion(tp=cells[0], fp=cells[1], fn=cells[2], tn=cells[3])


class ShadowVerdicts:
    def __init__(self, settings: ShadowVerdictSettings) -> None:
        self.settings = settings
        self._rng = np.random.default_rng(settings.seed)
        self._tools: dict[str, _Tool] = {}
        self._arbitration: dict[str, Arbitration] = {}

    def _arbiter(self, tool: str) -> Arbitration:
        return self._arbitration.setdefault(tool, Arbitration())

    def on_case(self, case: AdjudicatedCase) -> None:
        self._arbiter(case.tool_id).record_case(case)

    def kappa_since_start(self, tool: str) -> float | None:
        """Kappa of every sampled pair of the tool since start (for the `all` gauge)."""
        state = self._tools.get(tool)
        return None if state is None else _confusion(state.total).kappa().value

    def on_score(self, score: ShadowScore, at: datetime) -> list[Message]:
        """Record one shadow score of a study acquired/inferred at `at` (event time)."""
        request = score.request
        self._arbiter(request.tool_id).record_shadow(score)
        if request.reason is not Reason.SAMPLED:
            return []
        state = self._tools.get(request.tool_id)
        if state is None:
            state = self._tools[request.tool_id] = _Tool(ConcordanceWindow(self.settings.window))
        cell = _cell(request.vendor_positive, score.positive)
        state.window.update(score)
        state.cells[cell] += 1
        state.total[cell] += 1
        state.pairs += 1
        state.since = at if state.since is None else min(state.since, at)
        state.latest = at if state.latest is None else max(state.latest, at)
        out: list[Message] = []
        if state.calibration is None:
            self._add_reference(state, cell, score, at)
        else:
            state.calibration.detector.update(score.embedding)
        if state.pairs % self.settings.window == 0:
            out += self._close_window(request.tool_id, state, score.model_digest)
        if state.calibration is None and state.pairs == self.settings.reference_pairs:
            state.calibration = self._calibrate(state.reference)
        return out

    def _add_reference(self, state: _Tool, cell: int, score: ShadowScore, at: datetime) -> None:
        ref = state.reference
        ref.cells[cell] += 1
        ref.embeddings.append(score.embedding)
        ref.first = at if ref.first is None else min(ref.first, at)
        ref.last = at if ref.last is None else max(ref.last, at)

    def _calibrate(self, ref: _Reference) -> _Calibration:
        assert ref.first is not None and ref.last is not None
        span_days = max((ref.last - ref.first).total_seconds() / 86_400.0, MIN_SPAN_DAYS)
        windows_per_day = self.settings.reference_pairs / span_days / self.settings.window
        alpha = min(
            MAX_ALPHA, max(MIN_ALPHA, alpha_for(self.settings.false_alarms_per_year,
                                                windows_per_day))
        )
        cells = (ref.cells[0], ref.cells[1], ref.cells[2], ref.cells[3])
        detector = EmbeddingDriftDetector(
            np.asarray(ref.embeddings),
            window=self.settings.window,
            alpha=alpha,
            n_permutations=max(199, math.ceil(2.0 / alpha)),
            reference_size=self.settings.reference_pairs,
            seed=self.settings.seed,
        )
        return _Calibration(
            expected_kappa=_confusion(ref.cells).kappa().value,
            level=kappa_alert_level(cells, self.settings.window, alpha, self._rng),
            alpha=alpha,
            detector=detector,
        )

    def _close_window(self, tool: str, state: _Tool, digest: str) -> list[Message]:
        snap = state.window.snapshot()
        assert snap is not None and state.latest is not None and state.since is not None
        at = state.latest
        window = f"last {self.settings.window} sampled"
        kappa = _confusion(state.cells).kappa()
        tally = self._arbiter(tool).tally()

        def snapshot(metric: str, value: float | None, **extra: object) -> MetricSnapshot:
            return MetricSnapshot.model_validate(
                {
                    "snapshot_id": f"shadow:{tool}:{metric}:{state.pairs}",
                    "kind": "shadow",
                    "at": at,
                    "tool_id": tool,
                    "window": window,
                    "metric": metric,
                    "value": value,
                    "n": snap.n,
                    **extra,
                }
            )

        out: list[Message] = [
            snapshot("kappa", snap.kappa, lower=kappa.interval and kappa.interval[0],
                     upper=kappa.interval and kappa.interval[1]),
            snapshot("spearman", snap.spearman),
            snapshot("discordant", float(snap.discordant)),
            snapshot("discordant_vendor_right", float(tally.vendor_right), n=tally.n),
            snapshot("discordant_shadow_right", float(tally.shadow_right), n=tally.n),
        ]
        cal = state.calibration
        if cal is not None:
            out.append(snapshot("kappa_alert_level", cal.level))
            detector = cal.detector
            if detector.p_value is not None:
                out.append(snapshot("embedding_drift_p", detector.p_value, detector="mmd"))
            observed = 1.0 if snap.kappa is None else snap.kappa
            if observed < cal.level:
                out.append(self._discordance_alert(tool, state, cal, observed, kappa.interval,
                                                   snap.n, snap.discordant, window, digest))
            if detector.drift_detected:
                out.append(self._drift_alert(tool, state, cal, window, digest))
        state.cells = [0, 0, 0, 0]
        state.since = None
        return out

    def _discordance_alert(
        self,
        tool: str,
        state: _Tool,
        cal: _Calibration,
        kappa: float,
        interval: tuple[float, float] | None,
        n: int,
        discordant: int,
        window: str,
        digest: str,
    ) -> Alert:
        assert state.latest is not None
        tally = self._arbiter(tool).tally()
        expected = "undefined" if cal.expected_kappa is None else f"{cal.expected_kappa:.2f}"
        summary = (
            f"{tool}: kappa between the vendor's calls and the shadow model's over the {window} "
            f"studies is {kappa:.2f}, below the calibrated alert level {cal.level:.2f} "
            f"(expected {expected} from the first {self.settings.reference_pairs} sampled "
            f"studies; level = {cal.alpha:.3g} quantile of window kappa on a stable stream). "
            f"n={n}, {discordant} studies called differently. Where the report settled a "
            f"disagreement so far: vendor right {tally.vendor_right}, shadow right "
            f"{tally.shadow_right}. Review the discordant studies; the vendor's model or its "
            "inputs may have changed."
        )
        return Alert(
            alert_id=f"shadow_discordance:{tool}:{state.pairs}",
            kind="shadow_discordance",
            severity=AlertSeverity.WARNING,
            raised_at=state.latest,
            tool_id=tool,
            metric="shadow_vendor_kappa",
            value=kappa,
            interval=interval,
            baseline=cal.expected_kappa,
            n=n,
            window=window,
            since=state.since,
            summary=summary,
            details={
                "alert_level": cal.level,
                "alpha": cal.alpha,
                "discordant": discordant,
                "vendor_right": tally.vendor_right,
                "shadow_right": tally.shadow_right,
                "shadow_model_sha256": digest,
            },
        )

    def _drift_alert(
        self, tool: str, state: _Tool, cal: _Calibration, window: str, digest: str
    ) -> Alert:
        assert state.latest is not None and cal.detector.p_value is not None
        p = cal.detector.p_value
        summary = (
            f"{tool}: the shadow model's image embeddings of the {window} studies differ from "
            f"the first {self.settings.reference_pairs} sampled studies (MMD permutation test "
            f"p={p:.3g} <= alpha {cal.alpha:.3g}, set for "
            f"{self.settings.false_alarms_per_year:g} false alarm(s) per year). The images "
            "reaching the tool changed (scanner, protocol, population): check recent changes."
        )
        return Alert(
            alert_id=f"embedding_drift:{tool}:{cal.detector.n_tests}",
            kind="embedding_drift",
            severity=AlertSeverity.WARNING,
            raised_at=state.latest,
            tool_id=tool,
            metric="embedding_mmd2",
            value=cal.detector.statistic,
            n=self.settings.window,
            window=window,
            since=state.since,
            summary=summary,
            details={"p_value": p, "alpha": cal.alpha, "shadow_model_sha256": digest},
        )
