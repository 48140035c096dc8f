"""`surveillance demo`: the whole path on the embedded stack, with a summary per tool.

Starts the embedded broker, creates the topics, starts a worker, replays the simulator's
days of AI results and reports, waits until the worker has counted every case, and
prints per tool what the simulator produced next to what the worker counted.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.labels import extract_labels
from surveillance.clinical.ledger import LABELLED
from surveillance.contracts import AIResult, Alert, Label, ReportFinal
from surveillance.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from surveillance.interop.dicom_demo import run_dicom_leg
from surveillance.interop.hl7_demo import run_interop_leg
from surveillance.report.committee_figures import committee_figures
from surveillance.report.quarterly import export_quarterly
from surveillance.settings import get_settings
from surveillance.simulate import SimEvent, scenario_by_name, simulate, stream_start
from surveillance.simulate.events import ToolTruth
from surveillance.store import migrate
from surveillance.store.committee_series import series_rows, store_series
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerProcess, combined_counts, wait_for_counts
from surveillance.stream.topics import ALERTS, all_topics, create_topics


def run_demo(
    days: int, seed: int, scenario: str, timeout: float, partitions: int,
    start: date | None = None, state_dir: Path | None = None,
) -> bool:
    """The demo; its files go in `state_dir` (default: a new temporary folder, made once
    the stream is simulated, so a refused `start` leaves nothing behind)."""
    t0 = time.monotonic()
    events, truth = demo_stream(days, seed, scenario, start)
    print(f"simulated {len(events)} events over {days} days from "
          f"{events[0].arrival.date().isoformat()} "
          f"(scenario {scenario!r}, seed {seed}) in {time.monotonic() - t0:.1f}s")
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="surveillance-demo-"))
    with EmbeddedBroker(log_dir=state_dir) as broker, EmbeddedPostgres(state_dir / "pg") as pg:
        create_topics(broker.bootstrap, all_topics(get_settings().stream.app_id, partitions))
        migrate(pg.url)
        worker = WorkerProcess(broker.bootstrap, state_dir).start()
        writer = WorkerProcess(
            broker.bootstrap, state_dir, env={"SURVEILLANCE_DATABASE__URL": pg.url},
            command="store-writer",
        ).start()
        intake_port = free_port()
        intake = WorkerProcess(
            broker.bootstrap, state_dir, env={"SURVEILLANCE_INTAKE_API_TOKENS": json.dumps(
                {"demo": DEMO_TOKEN})},
            command="intake", args=("--port", str(intake_port)), web_port=intake_port,
        ).start()
        try:
            t1 = time.monotonic()
            n = replay_paced(broker.bootstrap, events, [worker])
            print(f"replayed {n} events into {broker.bootstrap} in {time.monotonic() - t1:.1f}s")
            expected = {tool: t.cases for tool, t in truth.items()}
            counts = wait_for_counts([worker], expected, timeout=timeout)
            elapsed = time.monotonic() - t0
            interop_ok = run_interop_leg(broker.bootstrap, state_dir, events, worker)
            report_adverse_event(intake, events)
            time.sleep(2)  # the worker links the report and raises its alert
            alerts = read_alerts(broker.bootstrap)
            stored = wait_for_rows(pg.url, sum(expected.values()), timeout=60)
        finally:
            worker.stop()
            writer.stop()
            intake.stop()
        ok = _summary(truth, counts) and interop_ok
        _alert_digest(alerts)
        print(f"\nstored in PostgreSQL: {stored} cases (expected {sum(expected.values())})")
        ok &= stored == sum(expected.values())
        ok &= run_dicom_leg(broker.bootstrap, state_dir, events)
        exports = export_quarterly(pg.url, quarter=_quarter(events[0].arrival.date()),
                                   out_dir=state_dir / "quarterly")
        print()
        for export in exports:
            print(f"quarterly review {export.tool_id}: {export.html} "
                  f"({export.pdf_pages} PDF pages)")
        figures = committee_figures(events, load_registry())
        stored_figures = store_series(pg.url, series_rows(figures), datetime.now(UTC))
        print(f"committee figures: {stored_figures} rows stored for the tool drill-down "
              f"({', '.join(sorted(figures['tools']))})")
    print(f"pipeline end to end {elapsed:.1f}s; total {time.monotonic() - t0:.1f}s; "
          f"worker log: {worker.log_path}")
    size = sum(f.stat().st_size for f in state_dir.rglob("*") if f.is_file())
    print(f"demo files (logs, broker and database data, quarterly reviews): {state_dir} "
          f"({size / 1e6:.0f} MB); delete the folder when done")
    return ok


def demo_stream(days: int, seed: int, scenario: str,
                start: date | None) -> tuple[list[SimEvent], dict[str, ToolTruth]]:
    """The demo's events (the HL7, FHIR and DICOM legs re-send some of them) from `start`,
    or by default from a day that ends the stream before today: the worker, like the
    bulk runner, dead-letters events dated in the future, and a demo over more days than
    lie between 2026-07-01 and today would otherwise show lost cases."""
    return simulate(days=days, seed=seed, scenario=scenario_by_name(scenario),
                    start=stream_start(days, start))


def replay_paced(bootstrap: str, events: list[SimEvent], workers: list[WorkerProcess]) -> int:
    """Replay day by day, keeping the worker within about a day of the producer.

    A bulk replay lets the consumer fetch topics and partitions weeks apart in event time,
    which a live feed never does; pacing keeps event time as the sources would send it.
    The worker is the bottleneck either way, so pacing costs no wall-clock time.
    """
    by_day: dict[date, list[SimEvent]] = {}
    for e in events:
        by_day.setdefault(e.arrival.date(), []).append(e)
    sent = 0
    ai_sent_before: list[int] = []
    ai_seen: set[str | None] = set()
    for day in sorted(by_day):
        batch = by_day[day]
        sent += produce(bootstrap, ((e.topic, e.key, e.value) for e in batch))
        ai_sent_before.append(len(ai_seen))
        ai_seen.update(e.event_id for e in batch if e.valid and e.topic == "ai.results")
        if len(ai_sent_before) >= 2:
            wait_for_total(workers, ai_sent_before[-2], timeout=60)
    return sent


def wait_for_total(workers: list[WorkerProcess], at_least: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = combined_counts(workers)
        if counts is not None and sum(c.get("cases", 0) for c in counts.values()) >= at_least:
            return
        time.sleep(0.1)


DEMO_TOKEN = "demo-intake-token"


def report_adverse_event(intake: WorkerProcess, events: list[SimEvent]) -> None:
    """File one report through the intake API, as a quality nurse's system would: a
    pneumothorax the AI missed on a real simulated study."""
    missed = _a_missed_pneumothorax(events)
    if missed is None:
        return
    ai, aware = missed
    body = {
        "submission_id": "demo-ae-0001",
        "aware_date": aware.isoformat(),
        "patient": {"patient_id": ai.patient_id, "age": ai.age, "sex": ai.sex.value},
        "event": {"outcome": "required_intervention", "event_date": ai.study_date.isoformat(),
                  "narrative": "Pneumothorax not flagged by triage; chest tube placed after "
                               "delayed read."},
        "device": {"tool_id": ai.tool_id, "manufacturer": ai.manufacturer,
                   "software_version": ai.software_version, "clearance_number": "K232410"},
        "reporter": {"name": "Demo Quality Nurse", "role": "quality",
                     "contact": "quality@example.org"},
        "accession_number": ai.accession_number,
        "ai_output": ai.ai_result,
        "ai_threshold": ai.operating_threshold,
        "radiologist_read": "present",
        "discordance_type": "false_negative",
    }
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(
                f"{intake.url}/api/v1/adverse-events", data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json",
                         "Authorization": f"Bearer {DEMO_TOKEN}"}, method="POST")
            with urllib.request.urlopen(request, timeout=10) as resp:
                receipt = json.loads(resp.read())
            print(f"\nadverse-event report filed through intake: reference "
                  f"{receipt.get('reference')}")
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    print("\nintake did not answer; no adverse-event report filed")


def _a_missed_pneumothorax(events: list[SimEvent]) -> tuple[AIResult, date] | None:
    labels: dict[str, Label] = {}
    for e in events:
        if e.valid and e.topic == "reports.final":
            report = ReportFinal.model_validate_json(e.value)
            if report.findings is not None:
                found = {f.finding_code: f.label for f in report.findings}
            else:
                found = extract_labels(report.report_text or "", ["pneumothorax"])
            if "pneumothorax" in found:
                labels[report.accession_number] = found["pneumothorax"]
    for e in reversed(events):
        if e.valid and e.topic == "ai.results":
            ai = AIResult.model_validate_json(e.value)
            if (ai.tool_id == "ptx-triage" and not ai.result_indicator
                    and labels.get(ai.accession_number) is Label.PRESENT):
                return ai, date.today()
    return None


def _quarter(day: date) -> str:
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def wait_for_rows(db_url: str, expected: int, timeout: float) -> int:
    """Wait until the store writer has committed `expected` cases; return the count."""
    import psycopg

    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM cases").fetchone()
        n = int(row[0]) if row else 0
        if n >= expected:
            return n
        time.sleep(0.5)
    return n


def read_alerts(bootstrap: str, timeout: float = 120.0) -> list[Alert]:
    """Every alert raised so far, once each (alert ids are deterministic).

    Read up to each partition's high watermark (every fetch answer carries it): an idle
    time-out ended the read early when a loaded machine took seconds to hand out a fetch,
    and the embedded broker's ListOffsets answers short of the log end (`embedded.log_end`).
    `timeout` bounds a hang only."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    by_id: dict[str, Alert] = {}
    try:
        partitions = [TopicPartition(ALERTS, p)
                      for p in sorted(consumer.partitions_for_topic(ALERTS) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        while any((high := consumer.highwater(tp)) is None or consumer.position(tp) < high
                  for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ALERTS} was not read to its end in {timeout:.0f} s")
            for batch in consumer.poll(timeout_ms=1000).values():
                for msg in batch:
                    alert = Alert.model_validate_json(msg.value)
                    by_id.setdefault(alert.alert_id, alert)
    finally:
        consumer.close()
    return sorted(by_id.values(), key=lambda a: a.raised_at)


def _alert_digest(alerts: list[Alert]) -> None:
    kinds = Counter((a.tool_id, a.kind) for a in alerts)
    print(f"\nalerts raised: {len(alerts)}")
    for (tool, kind), n in sorted(kinds.items()):
        print(f"  {tool:<12} {kind:<20} {n}")
    shown: set[tuple[str, str]] = set()
    for alert in alerts:
        key = (alert.tool_id, alert.kind)
        if key in shown or alert.kind in ("new_category", "regulatory_due_soon"):
            continue
        shown.add(key)
        print(f"- [{alert.severity}] {alert.raised_at:%Y-%m-%d} {alert.summary}")


def _summary(truth: Mapping[str, ToolTruth], counts: Mapping[str, Mapping[str, int]]) -> bool:
    lines, ok = summary_table(truth, counts)
    print()
    print("\n".join(lines))
    return ok


#: (column title, simulator's outcome, worker's outcomes counted in it). A case the
#: simulator sent no report for is `pending` at the worker, or `unlabelled` once the
#: unlabelled horizon has passed without one: both are a case still waiting for its report.
COLUMNS = (
    ("TP", "TP", ("TP",)),
    ("FP", "FP", ("FP",)),
    ("TN", "TN", ("TN",)),
    ("FN", "FN", ("FN",)),
    ("indet", "indeterminate", ("indeterminate",)),
    ("pending", "no_report", ("pending", "unlabelled")),
)


def summary_table(
    truth: Mapping[str, ToolTruth], counts: Mapping[str, Mapping[str, int]]
) -> tuple[list[str], bool]:
    """Per tool, the simulator's cases next to the worker's, outcome by outcome; whether
    every cell agrees. The outcome columns add up to the cases."""
    header = f"{'tool':<12} {'cases sim':>9} {'counted':>8}  " + "  ".join(
        f"{title:>11}" for title, _, _ in COLUMNS
    )
    lines = [header, "-" * len(header)]
    ok = True
    for tool in sorted(truth):
        sim = truth[tool]
        got = counts.get(tool, {})
        cells = []
        for _, simulated, counted in COLUMNS:
            s, g = sim.final_outcomes.get(simulated, 0), sum(got.get(o, 0) for o in counted)
            cells.append(f"{s:>5}/{g:<5}")
            ok &= s == g
        ok &= sim.cases == got.get("cases", 0)
        lines.append(f"{tool:<12} {sim.cases:>9} {got.get('cases', 0):>8}  " + "  ".join(cells))
    labelled = sum(v for t in counts.values() for k, v in t.items() if k in LABELLED)
    lines.append(f"(cells: simulated/counted; cases = TP + FP + TN + FN + indet + pending; "
                 f"{labelled} labelled cases in the confusion matrices; pending: still "
                 "waiting for the report)")
    lines.append("RESULT: " + ("all counts equal" if ok else "COUNTS DIFFER"))
    return lines, ok
