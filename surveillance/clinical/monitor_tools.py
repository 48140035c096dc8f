"""A tool's whole state in the monitor, taken out and put back (`engine.snapshots`), or
dropped when its partitions leave this worker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from surveillance.clinical.case_placement import CaseView, PlaceKey, Placement
from surveillance.clinical.monitor_state import MonitorState


class ToolState:
    """Part of `PerformanceMonitor`: its per-tool state as a whole."""

    state: MonitorState
    _placements: dict[PlaceKey, Placement]
    _homes: dict[str, CaseView]

    def tool_state(self, tool: str) -> dict[str, object]:
        """Everything held about `tool`, as live objects (`engine.snapshots` writes it)."""
        s = self.state
        return {
            "windows": s.windows.get(tool), "versions": s.versions.get(tool),
            **{name: {k: v for k, v in part.items() if k[0] == tool} for name, part in (
                ("verdicts", s.verdicts), ("alarming", s.alarming),
                ("warnings", s.warnings), ("episodes", s.episodes))},
            "placements": {k: v for k, v in self._placements.items() if k[0] == tool},
            "homes": {k: v for k, v in self._homes.items() if v.tool == tool},
        }

    def restore_tool(self, tool: str, held: Mapping[str, Any]) -> None:
        """Replace all state of `tool` with what `tool_state` gave (decoded)."""
        self.forget_tools([tool])
        s = self.state
        if held["windows"] is not None:
            s.windows[tool] = held["windows"]
        if held["versions"] is not None:
            s.versions[tool] = held["versions"]
        s.verdicts.update(held["verdicts"])
        s.alarming.update(held["alarming"])
        s.warnings.update(held["warnings"])
        s.episodes.update(held["episodes"])
        self._placements.update(held["placements"])
        self._homes.update(held["homes"])

    def forget_tools(self, tools: Iterable[str]) -> None:
        """Drop all state of tools whose partitions this worker no longer owns."""
        gone = set(tools)
        self._homes = {k: v for k, v in self._homes.items() if v.tool not in gone}
        self._placements = {k: v for k, v in self._placements.items() if k[0] not in gone}
        for tool in gone:
            self.state.forget(tool)
