"""The classes a case-stage snapshot holds (`engine.snapshots`), by qualified name.

A snapshot is encoded and decoded with this registry (`engine.state_codec`); the source
of every module defining one of these classes is part of the snapshot's code digest
(`snapshots.CODE`), so that a snapshot written by other code is rebuilt by replay.
"""

from __future__ import annotations

from surveillance.clinical.case_placement import CaseView, Placement
from surveillance.clinical.evaluation_order import _Waiting
from surveillance.clinical.label_free import LabelFreeMonitor, _Day
from surveillance.clinical.ledger import CaseRecord
from surveillance.clinical.monitor_state import Episode, VersionRecord
from surveillance.clinical.verdicts import MetricVerdict, VerdictKind
from surveillance.clinical.version_charts import Chart, Observation, VersionCharts
from surveillance.contracts import (
    Acquisition,
    AdjudicatedCase,
    AIResult,
    CaseOutcome,
    Scanner,
    wire,
)
from surveillance.stats import drift_bank, drift_episode
from surveillance.stats.agreement import Confusion
from surveillance.stats.categorical_drift import (
    CategoricalDriftDetector,
    NewCategory,
    WindowedDistributionTest,
    WindowThresholds,
)
from surveillance.stats.cusum import BernoulliCUSUM, ChartDesign
from surveillance.stats.drift_categorical_feature import CategoricalFeature
from surveillance.stats.drift_feature_bank import Columns, FeatureBank
from surveillance.stats.drift_numeric_feature import NumericFeature
from surveillance.stats.page_hinkley_run import PageHinkleyRun
from surveillance.stats.windows import AgreementWindows, KeyGroup, KeyWindows

SNAPSHOT_CLASSES: tuple[type, ...] = (
    AgreementWindows, KeyWindows, KeyGroup, VersionRecord, LabelFreeMonitor, _Day,
    VersionCharts, Chart, Observation, BernoulliCUSUM, ChartDesign, MetricVerdict,
    VerdictKind, Episode, Placement, CaseView, CaseOutcome, Confusion,
    drift_bank.DriftBank, drift_bank._Phase, drift_episode.VerdictContext,
    drift_episode.Episode, Columns, FeatureBank, NumericFeature, CategoricalFeature,
    WindowedDistributionTest, WindowThresholds, NewCategory, PageHinkleyRun,
    CategoricalDriftDetector,
    AIResult, Scanner, Acquisition, AdjudicatedCase, _Waiting, CaseRecord,
    wire.AdjudicatedCase, wire.Scanner, wire.Acquisition,
)
CLASSES = {f"{c.__module__}.{c.__qualname__}": c for c in SNAPSHOT_CLASSES}
