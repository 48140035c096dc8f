"""Shadow re-scoring speed on this machine: studies/s and p95 latency per study.

Two paths, each at batch sizes 1 and 16, onnxruntime on one intra-op thread (the default
`ShadowSettings.intra_op_threads`):

- model: preprocessed [N, 1, 64, 64] images -> `ShadowModel.predict`;
- end to end: DICOM files on local disk -> `FolderDicomSource` -> preprocessing -> model
  (`ShadowScorer`, what the runner's worker calls).

A study's latency is the duration of the call that scored it (in a batch of 16 every study
waits for the whole batch). Run: ``python benchmarks/shadow_inference.py [--studies 480]``
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from surveillance.shadow.build_reference_model import build_reference_model
from surveillance.shadow.dicom_source import FolderDicomSource
from surveillance.shadow.model import ShadowModel
from surveillance.shadow.preprocess import preprocess_study
from surveillance.shadow.sampler import Reason
from surveillance.shadow.scorer import ShadowRequest, ShadowScorer
from surveillance.shadow.synthetic_studies import synthesize_dataset, write_dataset


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} logical CPUs "
        f"(shared), Python {platform.python_version()}, onnxruntime {ort.__version__}, "
        "1 intra-op thread"
    )


def measure(n_studies: int, batch: int, call: Callable[[int, int], None]) -> tuple[float, float]:
    """(studies per second, p95 seconds per study) over all batches of `n_studies`."""
    call(0, batch)  # warm-up: first-call allocations are not steady state
    durations = []
    start = time.perf_counter()
    for lo in range(0, n_studies, batch):
        t0 = time.perf_counter()
        call(lo, min(lo + batch, n_studies))
        durations.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    return n_studies / total, float(np.percentile(durations, 95))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=480)
    args = parser.parse_args()
    print(machine())
    model = ShadowModel.from_bytes(build_reference_model(seed=0), intra_op_threads=1)
    studies = synthesize_dataset(seed=99, n_studies=args.studies)
    images = np.stack([preprocess_study(s.slices()) for s in studies]).astype(np.float32)
    slices = sum(s.hu.shape[0] for s in studies)
    print(f"{args.studies} synthetic head-CT studies, {slices} slices of 64x64 in total")

    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(studies, Path(tmp))
        source = FolderDicomSource(Path(tmp))
        source.load(studies[0].accession)  # index the folder before timing
        scorer = ShadowScorer(source, model, threshold=0.5)
        requests = [
            ShadowRequest(f"e{i}", "ich-triage", "1", "s", s.accession, 0.5, True, Reason.SAMPLED)
            for i, s in enumerate(studies)
        ]

        def model_only(lo: int, hi: int) -> None:
            model.predict(images[lo:hi])

        def end_to_end(lo: int, hi: int) -> None:
            scorer(requests[lo:hi])

        paths = {"model only": model_only, "DICOM end to end": end_to_end}
        print(f"{'path':<18} {'batch':>5} {'studies/s':>10} {'p95 ms/study':>13}")
        for name, call in paths.items():
            for batch in (1, 16):
                rate, p95 = measure(args.studies, batch, call)
                print(f"{name:<18} {batch:>5} {rate:>10.1f} {p95 * 1000:>13.2f}")


if __name__ == "__main__":
    main()
