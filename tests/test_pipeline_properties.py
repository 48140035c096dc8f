"""Whatever contract-valid input arrives, the worker's engine raises nothing.

Hypothesis generates AI results and reports the contracts accept, with the values real
traffic and attackers send: versions and sites with spaces ("5.2.1 build 7", "Main
Campus"), non-ASCII and 128-character identifiers, control characters, unregistered tools,
dates from 1975 to 2030 in time zones from -12:00 to +14:00 (year-1 and 9999 dates too),
scores at 0 and 1, structured findings or report text, corrections. 100 batches of 100
events go, in order, through the worker's engine (`engine.local.LocalPipeline`): ingest
(which accepts or dead-letters each with a reason), the join on 4 partitions, the internal
edge (`stream.internal`: every case our join emits must pass it as it is, or it would be
dead-lettered), and the case stage (ledger, metrics, held cases, monitor, drift banks,
daily evaluation, publishing to the Prometheus registry). Derandomized: the same events every run.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import AIResult, DeadLetter, ReportFinal, wire
from surveillance.engine.config import EngineConfig
from surveillance.engine.local import LocalPipeline
from surveillance.observe import metrics
from surveillance.simulate import SimEvent
from surveillance.stream import effects
from surveillance.stream.ingest import DateRange, Rejected
from surveillance.stream.internal import read_join_input
from surveillance.stream.topics import AI_RESULTS, CASES_ADJUDICATED, REPORTS_FINAL

PARTITIONS = 4
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # the worker's wall clock
REGISTRY = load_registry()
BATCHES, BATCH = 100, 100

for _tool in REGISTRY.values():  # as the worker does at startup
    metrics.register_tool(_tool.tool_id, _tool.modality)

odd_ids = st.sampled_from([
    "5.2.1 build 7", "Main Campus", "Clínica Norte", "v2 (beta)", "x" * 128, "-lead", "a/b",
    "1.0", "site-a", "日本語", "O'Brien Imaging", "tab\there", "nul\x00byte", "ZWJ\u200d",
])
text_ids = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=128)
plain = st.sampled_from(["site-a", "site-b", "1.0", "2.4.0", "GE", "CT HEAD WO"])
ids = st.one_of(plain, plain, plain, plain, odd_ids, text_ids).filter(lambda s: s.strip() != "")
zones = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
recent = st.datetimes(datetime(2026, 6, 1), datetime(2026, 12, 1), timezones=zones)
anytime = st.one_of(
    recent, recent, recent, recent, recent, recent, recent, recent,
    st.datetimes(datetime(1975, 1, 1), datetime(2030, 12, 31), timezones=zones),
    st.sampled_from([datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=14))),
                     datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-12))),
                     datetime(1980, 1, 1, tzinfo=UTC), NOW + timedelta(minutes=59)]),
)
days = st.one_of(anytime.map(lambda d: d.date()), anytime.map(lambda d: d.date()),
                 st.sampled_from([date(1, 1, 1), date(9999, 12, 31), date(1979, 12, 31)]))
accessions = st.integers(0, 2000).map(lambda i: f"ACC-{i}")
tools = st.one_of(st.sampled_from(sorted(REGISTRY)), ids)
unit = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.5]))


@st.composite
def ai_results(draw: st.DrawFn) -> dict[str, Any]:
    tool = draw(tools)
    finding = REGISTRY[tool].finding_code if tool in REGISTRY else draw(ids)
    score, threshold = draw(unit), draw(unit)
    return AIResult(
        event_id=f"ai-{draw(st.integers(0, 10**9))}", tool_id=tool, manufacturer=draw(ids),
        model="m", software_version=draw(ids), finding_code=finding, ai_result=score,
        operating_threshold=threshold, result_indicator=draw(st.booleans()),
        patient_id=draw(ids), accession_number=draw(accessions), study_instance_uid=draw(ids),
        study_date=draw(days), site=draw(ids), modality=draw(st.sampled_from(["CT", "DX", "MG",
                                                                              "ct scan"])),
        body_part_examined="HEAD", scanner={"manufacturer": draw(ids), "model": draw(ids),
                                            "software_version": draw(ids)},
        acquisition={"kvp": draw(st.none() | st.floats(1, 200)),
                     "slice_thickness": draw(st.none() | st.floats(0.1, 50)),
                     "pixel_spacing": draw(st.none() | st.floats(0.01, 10)),
                     "protocol_name": draw(st.none() | ids)},
        age=draw(st.none() | st.integers(0, 130)), sex=draw(st.sampled_from("FMOU")),
        inference_date=draw(anytime),
    ).model_dump(mode="json")


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    codes = sorted({t.finding_code for t in REGISTRY.values()})
    structured = draw(st.booleans())
    findings = [{"finding_code": draw(st.sampled_from(codes)),
                 "label": draw(st.sampled_from(["present", "absent", "indeterminate"]))}
                ] if structured else None
    text = None if structured else draw(st.sampled_from([
        "No acute intracranial hemorrhage.", "Small pneumothorax on the right.",
        "Possible large vessel occlusion; cannot exclude.", "Unremarkable.\x00",
    ]))
    return ReportFinal(
        event_id=f"rep-{draw(st.integers(0, 10**9))}", accession_number=draw(accessions),
        site=draw(ids), finalized_at=draw(anytime),
        status=draw(st.sampled_from(["final", "corrected", "addendum"])),
        findings=findings, report_text=text,
    ).model_dump(mode="json", exclude_none=True)


events = st.one_of(ai_results().map(lambda v: (AI_RESULTS, v)),
                   reports().map(lambda v: (REPORTS_FINAL, v)))


def test_ten_thousand_contract_valid_events_through_the_pure_path_raise_nothing() -> None:
    path = LocalPipeline(EngineConfig.plain(PARTITIONS), on_metrics=effects.record)
    seen = {"events": 0}

    @settings(max_examples=BATCHES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(st.lists(events, min_size=BATCH, max_size=BATCH))
    def batch(generated: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, value in generated:
            raw = json.dumps(value).encode()
            event = SimEvent(topic, value["accession_number"].encode(), raw, NOW, True,
                             value["event_id"])
            seen["events"] += 1
            accepted = path.config.ingest.accept(topic, raw, NOW, PARTITIONS)
            if not isinstance(accepted, Rejected):  # the rerouted hop takes it as it is
                item = accepted[0]
                assert read_join_input(wire.encode(item), NOW,
                                       DateRange()) == item
            path.feed(event)  # every case the join emits goes through `read_case` as it is

    batch()
    letters = [DeadLetter.model_validate_json(p.value) for p in path.dead_letters]
    reasons: dict[str, int] = {}
    for letter in letters:
        reason, _, message = letter.reason.partition(": ")
        key = message.split(":")[0] if reason == "schema" else reason
        reasons[key] = reasons.get(key, 0) + 1
    counted = len(path.tables["case_state"])
    print(f"\n{seen['events']} events, {len(letters)} dead-lettered {reasons}, "
          f"{path.cases_taken} case revisions, {counted} cases counted")
    assert seen["events"] >= 10_000
    assert seen["events"] - len(letters) >= 5_000  # most reach the join
    # ... and the case stage. Derandomized is not fixed: Hypothesis also draws constants from
    # every module loaded, so the corpus differs between this file run alone (3,221 revisions,
    # 389 cases) and the whole suite (3,196 and 294 in CI; 3,300 and 299 with all collected).
    assert path.cases_taken >= 1_500 and counted >= 150
    # Input is refused only for its contract; a record our join wrote only when it corrects
    # a case older than the case horizon (these dates span decades) and no store is there
    # to say whether it was counted (`engine.horizon`).
    for letter in letters:
        if letter.source_topic == CASES_ADJUDICATED:
            assert letter.reason.startswith("horizon: case revision "), letter.reason
        else:
            assert letter.reason.startswith("schema: "), letter.reason
            assert letter.source_topic in (AI_RESULTS, REPORTS_FINAL)
    # Every identifier label /metrics exports stayed within its bounded set.
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            for name in ("tool", "version", "site", "modality"):
                value = sample.labels.get(name)
                assert value is None or metrics.identifier(name, value) == value
