"""What the performance monitor keeps, and the reads its alerts and evaluations share.

`MonitorState` holds the settings and every piece of state of `clinical.monitor`'s
`PerformanceMonitor`; the modules that build its alerts (`monitor_alerts`) and run its
daily evaluation (`daily_evaluation`) read and update it through the helpers here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.label_free import LabelFreeMonitor
from surveillance.clinical.sites import ALL_SITES as ALL_SITES  # re-exported
from surveillance.clinical.subgroup_attribution import SubgroupFinding, attribute_subgroup
from surveillance.clinical.verdicts import Metric, MetricVerdict
from surveillance.clinical.version_charts import VersionCharts
from surveillance.errors import SurveillanceError
from surveillance.stats.agreement import Confusion
from surveillance.stats.alarm_budget import AlarmBudget
from surveillance.stats.windows import AgreementWindows, Key

SUBGROUP_DIMENSIONS = ("scanner_manufacturer", "sex", "age_band")
#: Windows the verdicts are judged on (a subset of the monitor's calendar windows).
VERDICT_WINDOWS = (30, 90)
#: Window whose figures give a CUSUM signal its clinical context.
CONTEXT_WINDOW = 30
#: Fewest cases in a metric's denominator for a subgroup to be tested as the concentration.
SUBGROUP_MIN_N = 10
#: Family-wise level of the subgroup attribution (`clinical.subgroup_attribution`).
SUBGROUP_ALPHA = 0.05
#: Report lags (AI call to first report) kept per version for the expected delay.
REPORT_LAGS_KEPT = 500

VerdictKey = tuple[str, str, str, int, Metric]  # tool, version, site, window, metric
EpisodeKey = tuple[str, str, Metric]  # tool, version, metric


class MonitorError(SurveillanceError):
    """A case or time the monitor cannot place (e.g. a naive datetime)."""


@dataclass(frozen=True, slots=True)
class ChartState:
    """What `publish_charts` exports for one chart."""

    tool: str
    version: str
    metric: Metric
    statistic: float
    threshold: float
    cases: int


@dataclass
class VersionRecord:
    """Everything kept about one model version of one tool."""

    tool: str
    version: str
    first_seen: datetime
    latest_inferred: datetime
    latest_ts: float  # latest_inferred as a POSIX timestamp, for the per-case comparison
    label_free: LabelFreeMonitor
    sites: set[str] = field(default_factory=set)
    subgroups: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # site -> dim
    charts: VersionCharts | None = None  # None when the tool has no clearance baseline
    #: Days from AI call to first report of the latest cases (a bounded deque: dropping
    #: the oldest of a full list moves all the others, on every labelled case).
    report_lags: deque[float] = field(default_factory=lambda: deque(maxlen=REPORT_LAGS_KEPT))

    def report_lag_days(self) -> float:
        """Median days from AI call to first report over the latest cases (0 before any)."""
        if not self.report_lags:
            return 0.0
        ordered = sorted(self.report_lags)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True, slots=True)
class Episode:
    """An open deviation of one metric of one version: the alert that opened it."""

    alert_id: str
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class Settings:
    """The monitor's parameters (see `PerformanceMonitor`)."""

    registry: Mapping[str, ToolBaseline]
    windows_days: tuple[int, ...]
    last_n: int
    budget: AlarmBudget
    reference_days: int
    reference_grace_days: int
    settle_days: int
    alpha: float
    label_free_alpha: float


@dataclass
class MonitorState:
    """Every tool's windows, versions, verdicts, warnings and open episodes."""

    settings: Settings
    windows: dict[str, AgreementWindows] = field(default_factory=dict)
    versions: dict[str, dict[str, VersionRecord]] = field(default_factory=dict)
    verdicts: dict[VerdictKey, MetricVerdict] = field(default_factory=dict)
    alarming: dict[VerdictKey, bool] = field(default_factory=dict)
    warnings: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    episodes: dict[EpisodeKey, Episode] = field(default_factory=dict)

    def windows_of(self, tool: str) -> AgreementWindows:
        windows = self.windows.get(tool)
        if windows is None:
            s = self.settings
            windows = self.windows[tool] = AgreementWindows(s.windows_days, s.last_n)
        return windows

    def window(
        self, tool: str, version: str, site: str, window: int | Literal["last_n"],
        now: datetime | None = None, subgroup: tuple[str, str] | None = None,
    ) -> Confusion:
        """Confusion counts of one key."""
        key = site_key(tool, version, site) + (() if subgroup is None else (subgroup,))
        return self.windows_of(tool).window(key, window, now).confusion

    def by_dimension(
        self, tool: str, version: str, site: str, window: int, now: datetime | None
    ) -> dict[str, dict[str, Confusion]]:
        """The window of every site (for all sites) and every subgroup value of `site`."""
        windows = self.windows_of(tool)
        record = self.versions[tool][version]
        base = site_key(tool, version, site)
        out: dict[str, dict[str, Confusion]] = {}
        if site == ALL_SITES:
            out["site"] = {
                s: windows.window(site_key(tool, version, s), window, now).confusion
                for s in sorted(record.sites)
            }
        for dim, values in record.subgroups.get(site, {}).items():
            out[dim] = {
                v: windows.window((*base, (dim, v)), window, now).confusion
                for v in sorted(values)
            }
        return out

    def locate(
        self, tool: str, version: str, site: str, window: int, metric: Metric,
        now: datetime | None,
    ) -> SubgroupFinding | None:
        """The subgroup a shortfall concentrates in, if the Holm-corrected tests say so."""
        by_dimension = self.by_dimension(tool, version, site, window, now)
        return attribute_subgroup(by_dimension, metric, SUBGROUP_ALPHA, SUBGROUP_MIN_N)

    def forget(self, tool: str) -> None:
        self.windows.pop(tool, None)
        self.versions.pop(tool, None)
        self.verdicts = {k: v for k, v in self.verdicts.items() if k[0] != tool}
        self.warnings = {k: v for k, v in self.warnings.items() if k[0] != tool}
        self.alarming = {k: v for k, v in self.alarming.items() if k[0] != tool}
        self.episodes = {k: v for k, v in self.episodes.items() if k[0] != tool}


def site_key(tool: str, version: str, site: str) -> Key:
    return (("tool", tool), ("version", version), ("site", site))


def day_start(day: int) -> datetime:
    d = date.fromordinal(day)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)
