"""A site whose id is "all" keeps its own figures: the monitor's all-sites figures are
keyed "all" too, and a site of that name would otherwise count in them twice.

Metamorphic: the same three weeks of simulated traffic, once with site-b named "north"
and once named "all" (the ids the hospital sends, in the AI results and the reports).
The all-sites figures must be the same in both runs, the renamed site's figures must be
those "north" had, and every site's cases must add up to the all-sites count.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from surveillance.clinical.sites import ALL_SITES, case_site
from surveillance.engine.config import EngineConfig
from surveillance.engine.local import LocalPipeline
from surveillance.simulate import SimEvent, simulate
from surveillance.stats.agreement import Confusion


def renamed(events: list[SimEvent], old: str, new: str) -> list[SimEvent]:
    out = []
    for e in events:
        if e.valid:
            value = json.loads(e.value)
            if value.get("site") == old:
                value["site"] = new
                e = SimEvent(e.topic, e.key, json.dumps(value).encode(), e.arrival, e.valid,
                             e.event_id)
        out.append(e)
    return out


def figures(events: list[SimEvent]) -> dict[tuple[str, str, str], Confusion]:
    """The 90-day confusion, at the stream's end, of every (tool, version, site) key."""
    pipeline = LocalPipeline(EngineConfig.plain(4))
    end = max(e.arrival for e in events) + timedelta(days=1)
    for e in events:
        pipeline.feed(e)
    monitor = pipeline.engine.cases.monitor
    out = {}
    for tool, versions in monitor.state.versions.items():
        for version, record in versions.items():
            for site in (*record.sites, ALL_SITES):
                out[tool, version, site] = monitor.window(tool, version, site, 90, end)
    return out


@pytest.fixture(scope="module")
def runs() -> tuple[dict[tuple[str, str, str], Confusion], ...]:
    events = simulate(days=21, seed=5)[0]
    return figures(renamed(events, "site-b", "north")), figures(renamed(events, "site-b", "all"))


def test_a_site_named_all_counts_once_in_the_all_sites_figures(
    runs: tuple[dict[tuple[str, str, str], Confusion], ...],
) -> None:
    north, named_all = runs
    keys = {(t, v) for t, v, _ in north}
    assert sum(north[t, v, "north"].n > 0 for t, v in keys if (t, v, "north") in north) >= 3
    for tool, version in keys:
        assert named_all[tool, version, ALL_SITES] == north[tool, version, ALL_SITES]
        assert (named_all.get((tool, version, case_site("all")))
                == north.get((tool, version, "north")))
        for figures_of in runs:
            sites = [c for (t, v, s), c in figures_of.items()
                     if (t, v) == (tool, version) and s != ALL_SITES]
            assert sum(c.n for c in sites) == figures_of[tool, version, ALL_SITES].n


def test_the_escape_keeps_sites_apart() -> None:
    names = {"all", "site:all", "site:site:all", "All", "north", "site:north", " all"}
    escaped = {case_site(n) for n in names}
    assert len(escaped) == len(names) and ALL_SITES not in escaped
    assert case_site("north") == "north" and case_site("All") == "All"
    assert case_site("site:north") == "site:north"
    longest = "site:" * 25 + "all"  # 128 characters: no room for another prefix
    assert case_site(longest) == longest and len(longest) == 128
