"""The shadow process: calibration of its alert level, its verdicts, the demo images, and the
process itself on a real embedded broker with its own consumer group."""

from __future__ import annotations

import asyncio
import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy.stats import multinomial
from sklearn.metrics import cohen_kappa_score

from surveillance.clinical import join
from surveillance.clinical.baselines import load_registry
from surveillance.contracts import Alert, CaseOutcome, MetricSnapshot, wire
from surveillance.contracts.wire import AdjudicatedCase
from surveillance.embedded import EmbeddedBroker
from surveillance.privacy import pseudonymize
from surveillance.shadow.demo_images import demo_studies, write_demo_studies
from surveillance.shadow.process import GROUP_ID, ShadowProcessSettings, run_shadow
from surveillance.shadow.sampler import Reason, Sampler
from surveillance.shadow.scorer import ShadowRequest, ShadowScore
from surveillance.shadow.settings import ShadowSettings
from surveillance.shadow.verdicts import (
    LEVEL_DRAWS,
    ShadowVerdicts,
    ShadowVerdictSettings,
    batch_kappa,
    kappa_alert_level,
)
from surveillance.simulate import SimEvent, ToolTruth, simulate
from surveillance.stream.ingest import Ingest, Rejected
from surveillance.stream.produce import produce
from surveillance.stream.topics import (
    ALERTS,
    CASES_ADJUDICATED,
    SNAPSHOTS,
    all_topics,
    create_topics,
)
from tests.topic_read import read_topic

KEY = b"shadow-process-test-key"
TOOL = "ich-triage"


# Calibration of the kappa alert level -----------------------------------------------------


def test_batch_kappa_matches_sklearn_and_is_one_when_both_raters_use_one_category() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        cells = rng.integers(0, 15, size=4)
        tp, fp, fn, tn = (int(c) for c in cells)
        vendor = [1] * (tp + fp) + [0] * (fn + tn)
        shadow = [1] * tp + [0] * fp + [1] * fn + [0] * tn
        if len(set(vendor)) == 1 and len(set(shadow)) == 1 and vendor[0] == shadow[0]:
            continue
        expected = cohen_kappa_score(vendor, shadow)
        assert batch_kappa(cells[None, :])[0] == pytest.approx(expected, abs=1e-12)
    assert batch_kappa(np.array([[7, 0, 0, 0], [0, 0, 0, 7]])).tolist() == [1.0, 1.0]


def test_kappa_alert_level_is_the_alpha_quantile_of_the_exact_window_distribution() -> None:
    reference, window, alpha = (30, 5, 4, 61), 12, 0.05
    level = kappa_alert_level(reference, window, alpha, np.random.default_rng(1))
    # Oracle: enumerate every 2 x 2 table of `window` pairs, weighted by scipy's multinomial
    # pmf under the Jeffreys-smoothed reference cell probabilities.
    p = (np.array(reference) + 0.5) / (sum(reference) + 2.0)
    tables = np.array(
        [c for c in itertools.product(range(window + 1), repeat=4) if sum(c) == window]
    )
    pmf = multinomial.pmf(tables, window, p)
    kappas = batch_kappa(tables)
    below = float(pmf[kappas < level - 1e-12].sum())
    at_or_below = float(pmf[kappas <= level + 1e-12].sum())
    mc = 4.0 * math.sqrt(alpha * (1 - alpha) / LEVEL_DRAWS)  # Monte Carlo error of the level
    assert below <= alpha + mc
    assert at_or_below >= alpha - mc


# Verdicts on hand-made scores ---------------------------------------------------------------

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def score(i: int, vendor: bool, shadow: bool, embedding: tuple[float, ...]) -> ShadowScore:
    request = ShadowRequest(
        ai_event_id=f"ai-{i}", tool_id=TOOL, software_version="1.0", site="site-a",
        accession=f"a_{i}", vendor_score=0.9 if vendor else 0.1, vendor_positive=vendor,
        reason=Reason.SAMPLED,
    )
    return ShadowScore(request, 0.8 if shadow else 0.2, shadow, embedding, "digest")


def test_discordance_alert_fires_on_the_window_where_the_calls_part_and_not_before() -> None:
    verdicts = ShadowVerdicts(ShadowVerdictSettings(reference_pairs=40, window=20, seed=3))
    rng = np.random.default_rng(11)
    out: list[MetricSnapshot | Alert] = []
    for i in range(100):
        vendor = bool(i % 4 == 0)  # 25% positive calls
        # Reference and the next two windows: the shadow agrees; window 5: it always differs
        shadow = vendor if i < 80 else not vendor
        out += verdicts.on_score(
            score(i, vendor, shadow, tuple(rng.normal(size=3))), T0 + timedelta(hours=i)
        )
    alerts = [m for m in out if isinstance(m, Alert)]
    assert [a.alert_id for a in alerts] == ["shadow_discordance:ich-triage:100"]
    alert = alerts[0]
    # 5 vendor-positive and 15 vendor-negative, all called the other way: p_o = 0,
    # p_e = (5 * 15 + 15 * 5) / 20**2 = 0.375, kappa = -0.375 / 0.625 = -0.6.
    assert alert.value == pytest.approx(-0.6)
    assert (alert.n, alert.baseline) == (20, 1.0)
    assert alert.since == T0 + timedelta(hours=80)
    kappas = [m for m in out if isinstance(m, MetricSnapshot) and m.metric == "kappa"]
    assert [k.value for k in kappas] == pytest.approx([1.0, 1.0, 1.0, 1.0, -0.6])
    assert [k.snapshot_id for k in kappas][-1] == "shadow:ich-triage:kappa:100"


def test_verdict_settings_need_aligned_windows() -> None:
    with pytest.raises(ValueError, match="multiple of window"):
        ShadowVerdictSettings(reference_pairs=50, window=20)


# Demo images ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated() -> tuple[list[SimEvent], dict[str, ToolTruth]]:
    return simulate(days=10)


def test_demo_study_content_follows_the_simulator_truth(
    simulated: tuple[list[SimEvent], dict[str, ToolTruth]],
) -> None:
    events, truth = simulated
    studies = demo_studies(events)
    outcomes = truth[TOOL].final_outcomes
    labelled = [s for s in studies if s.from_report]
    assert len(studies) == truth[TOOL].cases
    assert len(labelled) == outcomes["TP"] + outcomes["FP"] + outcomes["TN"] + outcomes["FN"]
    assert sum(s.positive for s in labelled) == outcomes["TP"] + outcomes["FN"]
    assert sum(s.positive != s.vendor_positive for s in labelled) == (
        outcomes["FP"] + outcomes["FN"]
    )
    # Unlabelled studies take the vendor's call.
    assert all(s.positive == s.vendor_positive for s in studies if not s.from_report)


# The process on a real broker -----------------------------------------------------------------


def adjudicate(events: list[SimEvent]) -> list[AdjudicatedCase]:
    """The pure pipeline: ingest then join, as the stream worker runs it."""
    codes = [b.finding_code for b in load_registry().values()]
    ingest = Ingest(KEY, codes, 64 * 1024)
    states: dict[str, join.JoinState] = {}
    watermark: datetime | None = None
    cases: list[AdjudicatedCase] = []
    for event in events:
        item = ingest(event.topic, event.value, event.arrival)
        if isinstance(item, Rejected):
            continue
        state, emitted = join.apply(
            states.get(item.accession), item, 0, timedelta(days=14), watermark
        )
        states[item.accession] = state
        at = join.event_time(item)
        watermark = at if watermark is None or at > watermark else watermark
        cases += emitted
    return cases


def indexed_pseudonyms(folder: Path) -> set[str]:
    """Oracle for which studies have images: read every header back with pydicom."""
    return {
        pseudonymize(KEY, "accession", str(pydicom.dcmread(p, stop_before_pixels=True)
                                            .AccessionNumber))
        for p in folder.rglob("*.dcm")
    }


def committed(bootstrap: str) -> int:
    """Messages of `cases.adjudicated` the shadow group has committed, over all partitions.

    (The embedded broker's ListOffsets does not report log-end offsets, so the test compares
    with the number of messages it produced instead.)
    """
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(GROUP_ID).get(GROUP_ID, {})
        return sum(o.offset for tp, o in offsets.items() if tp.topic == CASES_ADJUDICATED)
    finally:
        admin.close()


@pytest.mark.integration
async def test_shadow_process_scores_the_sample_and_every_discordant_case_in_its_own_group(
    simulated: tuple[list[SimEvent], dict[str, ToolTruth]], tmp_path: Path
) -> None:
    events, _ = simulated
    cases = adjudicate(events)
    images, model = tmp_path / "images", tmp_path / "shadow.onnx"
    written = write_demo_studies(events, images, fraction=0.5, seed=3, model_path=model)
    with_image = indexed_pseudonyms(images)
    assert len(with_image) == written

    shadow = ShadowSettings(
        model_path=model, image_folder=images, sample_fraction=0.2, queue_size=5000,
        priority_queue_size=5000, batch_size=32,
    )
    options = ShadowProcessSettings(
        auto_offset_reset="earliest",
        verdicts=ShadowVerdictSettings(reference_pairs=40, window=20),
    )
    # Expected work, from the cases themselves: the sample is the keyed hash's definition.
    sampler = Sampler(shadow.sample_fraction, shadow.sample_salt)
    ich = [c for c in cases if c.tool_id == TOOL]
    sampled = {c.ai_event_id: c.accession for c in ich
               if c.revision == 0 and sampler.in_sample(c.ai_event_id)}
    discordant = {c.ai_event_id: c.accession for c in ich
                  if c.outcome in (CaseOutcome.FP, CaseOutcome.FN)
                  and not sampler.in_sample(c.ai_event_id)}
    discordant_with_image = [a for a in discordant.values() if a in with_image]
    sampled_with_image = [a for a in sampled.values() if a in with_image]
    assert len(discordant_with_image) >= 3

    with EmbeddedBroker() as broker:  # its own broker: the session broker is shared
        create_topics(broker.bootstrap, all_topics("surveillance", 2))
        produce(broker.bootstrap, [
            (CASES_ADJUDICATED, c.tool_id.encode(), wire.encode(c))
            for c in cases
        ])
        stop = asyncio.Event()
        task = asyncio.create_task(run_shadow(broker.bootstrap, shadow, KEY, stop, options))
        try:
            for _ in range(600):  # the loop ends when the group has consumed every case
                done = await asyncio.to_thread(committed, broker.bootstrap)
                if task.done() or done == len(cases):
                    break
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            stats = await task
        assert await asyncio.to_thread(committed, broker.bootstrap) == len(cases)
        snapshots = [MetricSnapshot.model_validate_json(v)
                     for v in read_topic(broker.bootstrap, SNAPSHOTS)]
        alerts = [Alert.model_validate_json(v) for v in read_topic(broker.bootstrap, ALERTS)]

        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        groups = {g["group_id"] for g in admin.list_groups()}
        admin.close()

    assert groups == {GROUP_ID}  # no main-stream group was involved
    assert stats.cases == len(ich)
    assert stats.offered == len(sampled) + len(discordant)
    assert (stats.shed, stats.failed, stats.invalid) == (0, 0, 0)
    assert stats.scored_discordant == len(discordant_with_image)  # every FP/FN with an image
    assert stats.scored_sampled == len(sampled_with_image)
    assert stats.scored + stats.shed + stats.image_failures + stats.failed == stats.offered
    assert stats.image_failures == stats.offered - len(sampled_with_image) - len(
        discordant_with_image
    )

    window = options.verdicts.window
    assert len(snapshots) == stats.snapshots and len(alerts) == stats.alerts
    assert {s.kind for s in snapshots} == {"shadow"} and {s.tool_id for s in snapshots} == {TOOL}
    assert len({s.snapshot_id for s in snapshots}) == len(snapshots)
    kappas = [s for s in snapshots if s.metric == "kappa"]
    assert len(kappas) == stats.scored_sampled // window
    tested = stats.scored_sampled // window - options.verdicts.reference_pairs // window
    assert len([s for s in snapshots if s.metric == "embedding_drift_p"]) == tested
    tally = [s for s in snapshots if s.metric.startswith("discordant_")]
    assert all(s.n is not None and s.n <= len(discordant_with_image) + len(sampled_with_image)
               for s in tally)
