"""A batch's metric calls, counted once per label set (`stream.effects.record`), leave the
registry exactly as the same calls made one at a time do (the worker's behaviour before
the aggregation), bounded labels included: with 2 sites and 2 versions per tool allowed,
which sites and versions get their own series depends on the order they are first seen.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from surveillance.contracts import CaseOutcome, ReportStatus
from surveillance.engine.records import MetricCall
from surveillance.observe import metrics as m
from surveillance.stream import effects, topics

TOOL = "t-effects"


@pytest.fixture
def bounds() -> Iterator[None]:
    """Bounds set by a test are undone after it (the registry is one per process)."""
    saved = copy.deepcopy(m._bounds.__dict__)
    m.register_tool(TOOL, "CT")
    yield
    m._bounds.__dict__.update(saved)


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample now; a NaN gauge (other tests in this process publish figures with no
    data) as infinity, so that it equals itself."""
    body, _ = m.render()
    return {
        (s.name, tuple(sorted(s.labels.items()))): math.inf if math.isnan(s.value) else s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if not s.name.endswith("_created") and not s.name.startswith(_MOVING)
    }


#: Samples that move by themselves: the process collector's, the last-seen time.
_MOVING = ("surveillance_process_", "process_", "python_",
           "surveillance_last_event_timestamp_seconds")


def changes(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
    """Counters: the increase of each that moved; gauges: every value now."""
    return {k: v - before.get(k, 0.0) if k[0].endswith("_total") else v
            for k, v in after.items()
            if not k[0].endswith("_total") or v != before.get(k)}


sites = st.sampled_from(["north", "south", "east", "west", "Main Campus"])
versions = st.sampled_from(["1.0", "1.1", "2.0 beta"])
tools = st.sampled_from([TOOL, "unknown-tool"])
calls = st.one_of(
    st.tuples(st.just("processed"), st.tuples(st.sampled_from(
        [topics.AI_RESULTS, topics.REPORTS_FINAL, topics.CASES_ADJUDICATED]))),
    st.tuples(st.just("duplicate"), st.tuples(st.just(topics.AI_RESULTS))),
    st.tuples(st.just("dead_letter"), st.tuples(st.just(topics.REPORTS_FINAL),
                                                st.sampled_from(["schema", "invalid_json"]))),
    st.tuples(st.just("ai_result"), st.tuples(tools, versions, sites, st.just("CT"))),
    st.tuples(st.just("report"), st.tuples(st.sampled_from(list(ReportStatus)))),
    st.tuples(st.just("eligible"), st.tuples(st.lists(tools, max_size=2), sites)),
    st.tuples(st.just("case"), st.tuples(tools, versions, sites,
                                         st.sampled_from(list(CaseOutcome)))),
    st.tuples(st.just("unvalidated_case"), st.tuples(tools, versions)),
    st.tuples(st.just("regulatory_clock"),
              st.tuples(tools, st.integers(2, 5), st.just(1), st.just(1))),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(calls, max_size=60))
def test_a_batch_counted_per_label_set_equals_the_calls_one_at_a_time(
    bounds: None, batch: list[MetricCall]
) -> None:
    start = copy.deepcopy(m._bounds.__dict__)
    m.bound_labels([], max_sites=2, max_versions_per_tool=2)
    before = samples()
    effects.record(batch)
    batched = changes(before, samples())

    m._bounds.__dict__.update(copy.deepcopy(start))
    m.bound_labels([], max_sites=2, max_versions_per_tool=2)
    before = samples()
    for name, args in batch:  # one call per event, as the worker made them before
        one: Any = effects._COUNTED.get(name)
        if one is not None:
            one(*args, 1)
        else:
            effects._CALLS[name](*args)
    assert batched == changes(before, samples())
    m._bounds.__dict__.update(start)


def test_repeated_label_sets_add_up(bounds: None) -> None:
    before = samples()
    effects.record([("processed", (topics.AI_RESULTS,))] * 7
                   + [("eligible", ([TOOL, TOOL], "north"))] * 3)
    after = changes(before, samples())
    assert after[("surveillance_events_processed_total", (("topic", "ai.results"),))] == 7
    eligible = [v for (name, _), v in after.items()
                if name == "surveillance_eligible_studies_total"]
    assert eligible == [6.0]  # the tool listed twice in each of 3 calls
