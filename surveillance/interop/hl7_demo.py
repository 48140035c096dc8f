"""The demo's interop leg: the simulator's reports again, as a RIS would send them.

Every valid simulated report is rendered as an HL7 ORU^R01 (coded CWE results for
structured findings, TX lines for text) and sent over MLLP to `surveillance hl7 listen`;
a sample also goes as FHIR DiagnosticReports to `surveillance fhir serve`. Both run as
their own processes, as in production. Each copy is a new event for a report the worker
already has, with the same time and labels, so no count may change: if a format lost a
label, a time or an accession on the way, the per-tool counts would move.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from datetime import UTC
from pathlib import Path
from typing import Any

from surveillance.contracts import ReportFinal, ReportStatus
from surveillance.embedded import free_port
from surveillance.interop.fhir_parse import ACSN_SYSTEM, OWN_SYSTEM
from surveillance.interop.hl7_ack import escape
from surveillance.interop.hl7_text import Delimiters
from surveillance.interop.mllp_server import END, START
from surveillance.simulate import SimEvent
from surveillance.stream.runner import WorkerProcess, combined_counts
from surveillance.stream.topics import REPORTS_FINAL

DEMO_FHIR_TOKEN = "demo-fhir-token"
FHIR_SAMPLE = 50
_HL7_STATUS = {ReportStatus.FINAL: "F", ReportStatus.CORRECTED: "C",
               ReportStatus.ADDENDUM: "A", ReportStatus.CANCELLED: "X"}
_FHIR_STATUS = {ReportStatus.FINAL: "final", ReportStatus.CORRECTED: "corrected",
                ReportStatus.ADDENDUM: "appended", ReportStatus.CANCELLED: "cancelled"}


def render_oru(report: ReportFinal, control_id: str) -> bytes:
    d = Delimiters()

    def h(value: str) -> str:
        return escape(value, d)

    at = report.finalized_at.astimezone(UTC)
    stamp = at.strftime("%Y%m%d%H%M%S") + f".{at.microsecond // 100:04d}+0000"
    obr = ["OBR", "1", "", h(report.accession_number), "IMG^Imaging report", *[""] * 17,
           stamp, "", "", _HL7_STATUS[report.status]]
    segments = [
        f"MSH|^~\\&|SIMULATOR|{h(report.site)}|SURVEILLANCE|SURVEILLANCE|{stamp}||"
        f"ORU^R01|{h(control_id)}|P|2.5.1|||||||UNICODE UTF-8",
        f"PID|1||{h(report.patient_id or '')}",
        "|".join(obr),
    ]
    n = 0
    for finding in report.findings or []:
        n += 1
        segments.append(f"OBX|{n}|CWE|{h(finding.finding_code)}^^L||"
                        f"{finding.label.value.upper()}^{finding.label.value}^L||||||F")
    for line in (report.report_text or "").split("\n") if report.report_text else []:
        n += 1
        segments.append(f"OBX|{n}|TX|REPORT^Report^L||{h(line)}||||||F")
    return ("\r".join(segments) + "\r").encode("utf-8")


def render_fhir(report: ReportFinal) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"type": {"coding": [{"system": ACSN_SYSTEM, "code": "ACSN"}]},
                        "value": report.accession_number}],
        "status": _FHIR_STATUS[report.status],
        "code": {"text": "Imaging report"},
        "issued": report.finalized_at.isoformat(),
        "performer": [{"identifier": {"value": report.site}}],
    }
    if report.patient_id:
        resource["subject"] = {"identifier": {"value": report.patient_id}}
    if report.report_text:
        resource["conclusion"] = report.report_text
    if report.findings:
        resource["conclusionCode"] = [{"coding": [
            {"system": OWN_SYSTEM, "code": f"{f.finding_code}:{f.label.value}"}]}
            for f in report.findings]
    return resource


def send_mllp(port: int, messages: list[bytes], window: int = 32) -> int:
    """Send with `window` frames in flight; the number answered AA."""
    aa = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        reader = sock.makefile("rb")
        sent = acked = 0
        while acked < len(messages):
            while sent < len(messages) and sent - acked < window:
                sock.sendall(START + messages[sent] + END)
                sent += 1
            ack = b""
            while not ack.endswith(END):
                chunk = reader.read(1)
                if not chunk:
                    return aa
                ack += chunk
            acked += 1
            aa += b"MSA|AA|" in ack
    return aa


def post_fhir(url: str, resource: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"{url}/fhir/DiagnosticReport", data=json.dumps(resource).encode(), method="POST",
        headers={"Content-Type": "application/fhir+json",
                 "Authorization": f"Bearer {DEMO_FHIR_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def reports_received(worker: WorkerProcess) -> float:
    """The worker's surveillance_reports_total, all statuses."""
    try:
        with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("surveillance_reports_total{"))


def run_interop_leg(bootstrap: str, state_dir: Path, events: list[SimEvent],
                    worker: WorkerProcess) -> bool:
    """Send the reports again over MLLP and FHIR; True when every one was accepted and
    the worker's per-tool counts did not change."""
    reports = [ReportFinal.model_validate_json(e.value) for e in events
               if e.valid and e.topic == REPORTS_FINAL]
    reports = [r for r in reports if r.report_text or r.findings
               or r.status is ReportStatus.CANCELLED]
    before = combined_counts([worker])
    received = reports_received(worker)
    mllp_port, fhir_port = free_port(), free_port()
    listener = WorkerProcess(bootstrap, state_dir, command="hl7",
                             args=("listen", "--port", str(mllp_port))).start()
    fhir = WorkerProcess(
        bootstrap, state_dir, env={"SURVEILLANCE_INTAKE_API_TOKENS": json.dumps(
            {"demo-ris": DEMO_FHIR_TOKEN})},
        command="fhir", args=("serve", "--port", str(fhir_port)), web_port=fhir_port,
    ).start()
    try:
        t0 = time.monotonic()
        if not (_wait_port(mllp_port, 60) and _wait_port(fhir_port, 60)):
            print("\ninterop leg: the HL7 listener or the FHIR service did not start")
            return False
        aa = send_mllp(mllp_port, [render_oru(r, f"SIM{i}") for i, r in enumerate(reports)])
        sample = reports[:: max(len(reports) // FHIR_SAMPLE, 1)][:FHIR_SAMPLE]
        created = sum(post_fhir(fhir.url, render_fhir(r)) == 201 for r in sample)
        expected = received + aa + created
        deadline = time.monotonic() + 120
        while reports_received(worker) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        after = combined_counts([worker])
        elapsed = time.monotonic() - t0
    finally:
        listener.stop()
        fhir.stop()
    same = before == after
    print(f"\ninterop leg: {len(reports)} reports as HL7 ORU^R01 over MLLP ({aa} ACKed AA), "
          f"{len(sample)} as FHIR DiagnosticReport ({created} created) in {elapsed:.1f}s; "
          f"worker read {reports_received(worker) - received:.0f} of them; per-tool counts "
          f"{'unchanged' if same else 'CHANGED'}")
    return same and aa == len(reports) and created == len(sample)
