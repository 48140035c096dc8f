"""The demo's DICOM leg, and the simulator's DICOM output.

`write_studies()` writes a sample of simulated studies as DICOM files: per study one
header-only image (its scanner and acquisition) and one TID 1500 SR holding all its AI
results. `run_dicom_leg()` starts `surveillance dicom listen` on the demo's broker (its
own topic, so the main pipeline's counts are untouched), sends the files with
pynetdicom's storage SCU, and prints per tool the results sent next to the results the
SCP published: they must be equal.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import AIResult
from surveillance.embedded import free_port
from surveillance.interop.dicom_write import image_of, sr_of
from surveillance.simulate import SimEvent
from surveillance.stream.runner import WorkerProcess
from surveillance.stream.topics import TopicSpec, create_topics, dlq

DEMO_TOPIC = "ai.results.dicom-demo"


def write_studies(events: list[SimEvent], out: Path, studies: int) -> Counter[str]:
    """Write the first `studies` simulated studies (image + SR each) under `out`; returns
    the AI results written per tool."""
    registry = load_registry()
    by_study: dict[str, dict[str, AIResult]] = defaultdict(dict)
    for e in events:
        if e.valid and e.topic == "ai.results":
            result = AIResult.model_validate_json(e.value)
            by_study[result.study_instance_uid].setdefault(result.event_id, result)
            if len(by_study) > studies:
                del by_study[result.study_instance_uid]
                break
    out.mkdir(parents=True, exist_ok=True)
    per_tool: Counter[str] = Counter()
    for n, results in enumerate(by_study.values()):
        ordered = list(results.values())
        image_of(ordered[0]).save_as(out / f"{n:05d}-image.dcm", enforce_file_format=True)
        sr_of(ordered, registry).save_as(out / f"{n:05d}-sr.dcm", enforce_file_format=True)
        per_tool.update(r.tool_id for r in ordered)
    return per_tool


def send_files(port: int, paths: list[Path], calling_ae: str = "DEMO-PACS") -> int:
    """C-STORE every file over one association; returns how many were stored."""
    from pydicom import dcmread

    from surveillance.interop.dicom_scu import associate

    sop_classes = sorted({str(dcmread(p, stop_before_pixels=True).SOPClassUID)
                          for p in paths})
    assoc = associate("127.0.0.1", port, calling_ae, sop_classes)
    if not assoc.is_established:
        return 0
    stored = 0
    try:
        for path in paths:
            status = assoc.send_c_store(path)
            stored += int("Status" in status and status.Status == 0)
    finally:
        assoc.release()
    return stored


def run_dicom_leg(bootstrap: str, state_dir: Path, events: list[SimEvent],
                  studies: int = 150) -> bool:
    from kafka import KafkaConsumer

    t0 = time.monotonic()
    files = state_dir / "dicom"
    sent = write_studies(events, files, studies)
    create_topics(bootstrap, [TopicSpec(DEMO_TOPIC, 1), TopicSpec(dlq(DEMO_TOPIC), 1)])
    port = free_port()
    listener = WorkerProcess(bootstrap, state_dir, command="dicom", args=("listen",), env={
        "SURVEILLANCE_DICOM__HOST": "127.0.0.1",
        "SURVEILLANCE_DICOM__PORT": str(port),
        "SURVEILLANCE_DICOM__TOPIC": DEMO_TOPIC,
        "SURVEILLANCE_DICOM__DEFAULT_SITE": "demo-site",
    })
    listener._env["SURVEILLANCE_DICOM__STOW_PORT"] = str(listener.web_port)
    listener.start()
    try:
        stored = 0
        deadline = time.monotonic() + 60
        paths = sorted(files.glob("*.dcm"))
        while time.monotonic() < deadline and stored == 0:
            try:
                stored = send_files(port, paths)
            except (ConnectionError, OSError, RuntimeError):
                stored = 0
            if stored == 0:
                time.sleep(0.5)  # the listener is still starting
        published: Counter[str] = Counter()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(published.values()) < sum(sent.values()):
            consumer = KafkaConsumer(DEMO_TOPIC, bootstrap_servers=bootstrap,
                                     auto_offset_reset="earliest", enable_auto_commit=False,
                                     consumer_timeout_ms=1500)
            ids = {}
            for msg in consumer:
                result = AIResult.model_validate_json(msg.value)
                ids[result.event_id] = result.tool_id
            consumer.close()
            published = Counter(ids.values())
    finally:
        listener.stop()
    print(f"\nDICOM leg: {len(paths)} objects ({studies} studies: header-only images and "
          f"TID 1500 SRs) sent by C-STORE, {stored} stored, in {time.monotonic() - t0:.1f}s")
    print(f"{'tool':<12} {'SR results sent':>16} {'published':>10}")
    for tool in sorted(sent):
        print(f"{tool:<12} {sent[tool]:>16} {published.get(tool, 0):>10}")
    ok = dict(sent) == dict(published) and stored == len(paths)
    print("DICOM RESULT:", "per-tool counts equal" if ok else "COUNTS DIFFER")
    return ok
