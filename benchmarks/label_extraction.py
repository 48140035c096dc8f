"""Cost of report-label extraction: all six findings of one text at once.

Texts: the 410 impression sentences of `tests/data/labels_{dev,heldout}.tsv` (typical
impressions: one to three sentences, some with headings and addenda), and 2,000 full
simulated reports (exam, history, findings and impression). Each text is labelled for every
finding code of the vocabulary (`extract_labels`), as ingest does. Printed beside it, from
the same run on the same texts: the ceiling of a plain scan, one precompiled regular
expression of every finding term run over the lowered text (what a keyword spotter with no
context rules costs). Nine rounds, the two taking turns. Printed: CPU time of this process
per text (best and median round), and the best wall-clock round; on a shared machine the
wall clock also counts the time spent waiting for a core.

    .venv/bin/python benchmarks/label_extraction.py
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from surveillance.clinical.label_evaluation import read_gold
from surveillance.clinical.label_vocabulary import load_vocabulary
from surveillance.clinical.labels import extract_labels
from surveillance.contracts import Label
from surveillance.simulate.reports import render_report_text

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
STUDIES = {
    "head_ct": ("intracranial_hemorrhage", "large_vessel_occlusion"),
    "chest_xr": ("pneumothorax",),
    "fundus": ("mtm_diabetic_retinopathy",),
    "cta_chest": ("pulmonary_embolism", "aortic_dissection"),
}


def impressions() -> list[str]:
    return [r.text for name in ("labels_dev.tsv", "labels_heldout.tsv")
            for r in read_gold(DATA / name)]


def reports(n: int, seed: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    labels = list(Label)
    out = []
    for i in range(n):
        study = list(STUDIES)[i % len(STUDIES)]
        stated = {c: labels[int(rng.integers(3))] for c in STUDIES[study]}
        out.append(render_report_text(rng, study, stated))
    return out


def per_text_us(
    texts: list[str], works: list[Callable[[str], object]], rounds: int = 9
) -> list[tuple[float, float, float]]:
    """Per text, in microseconds, for each work: best and median CPU time, best wall time.

    The works take turns round by round, so a burst of load from other processes hits
    them alike. CPU time (of this process) is the cost; wall time on a shared machine also
    holds the time spent waiting for a core.
    """
    cpu: list[list[float]] = [[] for _ in works]
    wall: list[list[float]] = [[] for _ in works]
    for _ in range(rounds):
        for i, work in enumerate(works):
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            for text in texts:
                work(text)
            cpu[i].append((time.process_time() - start_cpu) / len(texts) * 1e6)
            wall[i].append((time.perf_counter() - start_wall) / len(texts) * 1e6)
    return [(min(c), statistics.median(c), min(w)) for c, w in zip(cpu, wall, strict=True)]


def main() -> None:
    vocab = load_vocabulary()
    codes = list(vocab.findings)
    scan = vocab.any_finding

    def extract(text: str) -> object:
        return extract_labels(text, codes, vocab)

    def plain(text: str) -> object:
        return [m.group(0) for m in scan.finditer(text.lower())]

    print(f"Python {platform.python_version()} on {platform.machine()}; "
          f"{len(codes)} finding codes per text")
    for name, texts in (("typical impression", impressions()),
                        ("full simulated report", reports(2000))):
        chars = statistics.mean(len(t) for t in texts)
        (ours, ours_median, ours_wall), (ceiling, ceiling_median, ceiling_wall) = per_text_us(
            texts, [extract, plain]
        )
        print(f"{name}, n={len(texts)}, {chars:.0f} chars on average (CPU time; wall):\n"
              f"  extraction        {ours:6.1f} us best, {ours_median:6.1f} us median"
              f"; wall {ours_wall:6.1f} us best (target < 100 us)\n"
              f"  plain regex scan  {ceiling:6.1f} us best, {ceiling_median:6.1f} us median"
              f"; wall {ceiling_wall:6.1f} us best; extraction costs {ours / ceiling:.0f}x"
              " the scan")

if __name__ == "__main__":
    main()
