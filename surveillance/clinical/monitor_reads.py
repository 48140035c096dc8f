"""What the performance monitor's state says, read for the adapter
(`surveillance.observe.publish`), the engine and tests."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from surveillance.clinical.daily_evaluation import chart_states
from surveillance.clinical.monitor_state import (
    ChartState,
    Episode,
    EpisodeKey,
    MonitorState,
    VerdictKey,
)
from surveillance.clinical.verdicts import Metric, MetricVerdict
from surveillance.stats.agreement import Confusion
from surveillance.stats.cusum import ChartDesign
from surveillance.stats.windows import AgreementWindows, Key


class MonitorReads:
    """Part of `PerformanceMonitor`: reads of its state, none of which changes it."""

    state: MonitorState

    def verdicts(self, tool: str | None = None) -> dict[VerdictKey, MetricVerdict]:
        """The latest verdict per (tool, version, site, window days, metric), of one tool
        or of all."""
        return {k: v for k, v in self.state.verdicts.items() if tool is None or k[0] == tool}

    def chart_states(self, tool: str | None = None) -> list[ChartState]:
        """Every chart's statistic and threshold, of one tool or of all."""
        return [
            chart
            for name, versions in self.state.versions.items() if tool is None or name == tool
            for record in versions.values()
            for chart in chart_states(record)
        ]

    def episodes(self) -> dict[EpisodeKey, Episode]:
        """Open episodes per (tool, version, metric)."""
        return dict(self.state.episodes)

    def chart_design(self, tool: str, version: str, metric: Metric) -> ChartDesign | None:
        """The design of one chart, None before its reference period has ended."""
        record = self.state.versions.get(tool, {}).get(version)
        if record is None or record.charts is None or record.charts.charts is None:
            return None
        return record.charts.charts[metric].design

    def versions(self, tool: str) -> list[str]:
        """Versions seen for `tool`, in the order first seen."""
        return list(self.state.versions.get(tool, {}))

    def window(
        self, tool: str, version: str, site: str, window: int | Literal["last_n"],
        now: datetime | None = None, subgroup: tuple[str, str] | None = None,
    ) -> Confusion:
        """Confusion counts of one key (for callers and tests)."""
        return self.state.window(tool, version, site, window, now, subgroup)

    def window_keys(self, tool: str) -> list[Key]:
        return self.state.windows[tool].keys() if tool in self.state.windows else []

    def tool_windows(self, tool: str) -> AgreementWindows:
        """All windows of `tool` (made empty if it has none)."""
        return self.state.windows_of(tool)
