"""Our label reader against the reference NegEx on NegEx's own annotated test sentences.

The public NegEx test kit (Chapman et al.; github.com/chapmanbe/negex, folder
`negex.python/`) holds `Annotations-1-120.txt` (report number, concept, sentence,
Affirmed/Negated), the trigger list `negex_triggers.txt`, and the reference Python
implementation `negex.py` (Peter Kang, 2009). Neither is part of this repository: pass
their paths.

    .venv/bin/python benchmarks/negex_corpus_comparison.py \
        --corpus PATH/Annotations-1-120.txt --negex PATH/negex.py \
        --triggers PATH/negex_triggers.txt

Three readers label the same rows, in one run:
- reference: `negex.negTagger(..., negP=False)` with NegEx's triggers (as its own wrapper
  runs it), "negated" or "affirmed";
- ours, NegEx triggers: our reader, configured only through a vocabulary file written from
  NegEx's trigger list (PREN -> negation_before, POST -> negation_after, PREP/POSP ->
  uncertainty before/after, PSEU -> pseudo, CONJ -> terminators; no sections, no template
  lines), one finding per concept, matched like the reference matches it;
- ours, shipped triggers: the same, with the triggers, sections and template answers of
  `surveillance/clinical/findings.yaml`.
Our label is "negated" when the concept is mentioned and the label is absent; a concept
we do not find, or find affirmed or uncertain, is "affirmed" (the corpus annotates
negation only, so a hedged mention is affirmed there).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from surveillance.clinical.label_vocabulary import DEFAULT_VOCABULARY, Vocabulary, load_vocabulary
from surveillance.clinical.labels import explain_label
from surveillance.contracts import Label
from surveillance.stats.intervals import wilson

_TAGS = {
    "[PREN]": "negation_before",
    "[POST]": "negation_after",
    "[PREP]": "uncertainty_before",
    "[POSP]": "uncertainty_after",
    "[PSEU]": "pseudo",
    "[CONJ]": "terminators",
}


def _load_reference(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("negex_reference", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot load the reference NegEx from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(corpus: Path) -> list[tuple[str, str, str]]:
    """(concept, sentence, gold) of every annotated row."""
    with corpus.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        return [(r[1], r[2], r[3].strip().lower()) for r in reader if len(r) >= 4]


def _negex_triggers(path: Path) -> tuple[dict[str, list[str]], int]:
    """NegEx's trigger list as our trigger keys; a phrase listed twice keeps its first tag."""
    triggers: dict[str, list[str]] = {key: [] for key in _TAGS.values()}
    seen: set[str] = set()
    dropped = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = [p for p in line.split("\t") if p.strip()]
        if len(parts) != 2 or parts[1].strip() not in _TAGS:
            continue
        phrase = " ".join(parts[0].lower().split())
        if phrase in seen:
            dropped += 1
            continue
        seen.add(phrase)
        triggers[_TAGS[parts[1].strip()]].append(phrase)
    return triggers, dropped


def _concept_pattern(concept: str) -> str:
    # As the reference matches a phrase: its words joined by any non-word characters.
    return r"\W+".join(re.escape(w) for w in concept.lower().split())


def _vocabulary(base: dict[str, Any], concepts: list[str], folder: Path, name: str) -> Vocabulary:
    findings = {f"c{i}": {"patterns": [_concept_pattern(c)]} for i, c in enumerate(concepts)}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**base, "findings": findings}))
    return load_vocabulary(path)


def _ours(vocab: Vocabulary, codes: dict[str, str]) -> Callable[[str, str], str]:
    def label(concept: str, sentence: str) -> str:
        result = explain_label(sentence, codes[concept], vocab)
        return "negated" if result.label is Label.ABSENT and result.mentions else "affirmed"

    return label


def _summary(name: str, gold: list[str], got: list[str]) -> str:
    right = sum(g == o for g, o in zip(gold, got, strict=True))
    low, high = wilson(right, len(gold))
    table = Counter(zip(gold, got, strict=True))
    tp, fp, fn = table[("negated", "negated")], table[("affirmed", "negated")], table[
        ("negated", "affirmed")]
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return (f"{name:<28} accuracy {right / len(gold):.3f} (95% CI {low:.3f}-{high:.3f}, "
            f"n={len(gold)}); negated: precision {precision:.3f}, recall {recall:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="Annotations-1-120.txt")
    parser.add_argument("--negex", type=Path, required=True, help="the reference negex.py")
    parser.add_argument("--triggers", type=Path, required=True, help="negex_triggers.txt")
    args = parser.parse_args(argv)
    for path in (args.corpus, args.negex, args.triggers):
        if not path.is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2
    reference = _load_reference(args.negex)
    rules = reference.sortRules(args.triggers.read_text(encoding="utf-8",
                                                        errors="replace").splitlines())
    rows = _rows(args.corpus)
    gold = [g for _, _, g in rows]
    ref = [reference.negTagger(sentence=s, phrases=[c], rules=rules, negP=False)
           .getNegationFlag() for c, s, _ in rows]

    concepts = sorted({c for c, _, _ in rows})
    codes = {c: f"c{i}" for i, c in enumerate(concepts)}
    triggers, dropped = _negex_triggers(args.triggers)
    shipped = yaml.safe_load(DEFAULT_VOCABULARY.read_text())
    with tempfile.TemporaryDirectory() as folder:
        negex_vocab = _vocabulary({"triggers": triggers}, concepts, Path(folder), "negex")
        shipped_vocab = _vocabulary(
            {k: v for k, v in shipped.items() if k != "findings"}, concepts, Path(folder),
            "shipped",
        )
    ours_negex = [_ours(negex_vocab, codes)(c, s) for c, s, _ in rows]
    ours_shipped = [_ours(shipped_vocab, codes)(c, s) for c, s, _ in rows]

    print(f"corpus {args.corpus.name}: {len(rows)} rows, {Counter(gold)}; "
          f"NegEx triggers {sum(map(len, triggers.values()))} ({dropped} listed twice, "
          "first tag kept)")
    print(_summary("reference NegEx (negex.py)", gold, ref))
    print(_summary("ours, NegEx triggers", gold, ours_negex))
    print(_summary("ours, shipped triggers", gold, ours_shipped))
    agree = sum(a == b for a, b in zip(ref, ours_negex, strict=True))
    print(f"ours (NegEx triggers) agrees with the reference on {agree} of {len(rows)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
