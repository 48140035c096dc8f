"""How well report-label extraction agrees with a gold file of labelled sentences.

The gold file is tab-separated: finding code, expected label (present / absent /
indeterminate), text. Blank lines and lines starting with ``#`` are skipped; a literal
``\\n`` in the text stands for a line break (template lines, addenda). Per finding: a 3x3
confusion table, accuracy, and per class precision and recall; each proportion with its
Wilson 95% interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from surveillance.clinical.label_vocabulary import Vocabulary
from surveillance.clinical.labels import default_vocabulary, extract_label
from surveillance.contracts import Label
from surveillance.errors import SurveillanceError
from surveillance.stats.intervals import wilson

LABELS = (Label.PRESENT, Label.ABSENT, Label.INDETERMINATE)


class GoldFileError(SurveillanceError):
    """The gold file cannot be read or a line of it is malformed."""


@dataclass(frozen=True, slots=True)
class GoldRow:
    line: int
    finding_code: str
    expected: Label
    text: str


@dataclass(frozen=True, slots=True)
class Proportion:
    successes: int
    n: int

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.successes, self.n)

    def __str__(self) -> str:
        if not self.n:
            return "n/a (n=0)"
        low, high = self.interval
        return f"{self.value:.3f} (95% CI {low:.3f}-{high:.3f}, n={self.n})"


@dataclass(frozen=True)
class FindingResult:
    finding_code: str
    #: (expected, got) -> count
    confusion: Counter[tuple[Label, Label]]

    @property
    def n(self) -> int:
        return sum(self.confusion.values())

    @property
    def accuracy(self) -> Proportion:
        right = sum(c for (e, g), c in self.confusion.items() if e is g)
        return Proportion(right, self.n)

    def precision(self, label: Label) -> Proportion:
        called = sum(c for (_, g), c in self.confusion.items() if g is label)
        return Proportion(self.confusion[(label, label)], called)

    def recall(self, label: Label) -> Proportion:
        actual = sum(c for (e, _), c in self.confusion.items() if e is label)
        return Proportion(self.confusion[(label, label)], actual)


@dataclass(frozen=True)
class Evaluation:
    findings: tuple[FindingResult, ...]
    misses: tuple[tuple[GoldRow, Label], ...]

    @property
    def overall(self) -> Proportion:
        right = sum(f.accuracy.successes for f in self.findings)
        return Proportion(right, sum(f.n for f in self.findings))


def read_gold(path: Path) -> list[GoldRow]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise GoldFileError(f"cannot read gold file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise GoldFileError(f"gold file {path} is not UTF-8 text") from exc
    rows = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        parts = raw.split("\t", 2)
        if len(parts) != 3 or not parts[2].strip():
            raise GoldFileError(
                f"gold file {path} line {number}: expected 3 tab-separated columns "
                "(finding code, label, text)"
            )
        code, label, text = (p.strip() for p in parts)
        try:
            expected = Label(label.lower())
        except ValueError:
            raise GoldFileError(
                f"gold file {path} line {number}: label {label[:40]!r} is not one of "
                "present, absent, indeterminate"
            ) from None
        rows.append(GoldRow(number, code, expected, text.replace("\\n", "\n")))
    if not rows:
        raise GoldFileError(f"gold file {path} has no labelled lines")
    return rows


def evaluate(rows: Sequence[GoldRow], vocabulary: Vocabulary | None = None) -> Evaluation:
    known = (vocabulary or default_vocabulary()).findings
    tables: dict[str, Counter[tuple[Label, Label]]] = {}
    misses = []
    for row in rows:
        if row.finding_code not in known:
            raise GoldFileError(
                f"gold line {row.line}: finding code {row.finding_code[:40]!r} is not in the "
                f"vocabulary (known: {', '.join(sorted(known))})"
            )
        got = extract_label(row.text, row.finding_code, vocabulary)
        tables.setdefault(row.finding_code, Counter())[(row.expected, got)] += 1
        if got is not row.expected:
            misses.append((row, got))
    results = tuple(FindingResult(code, tables[code]) for code in sorted(tables))
    return Evaluation(results, tuple(misses))


def format_evaluation(evaluation: Evaluation) -> list[str]:
    """The report `surveillance labels evaluate` prints; its last line is the overall figure."""
    out = []
    width = max(len(label.value) for label in LABELS)
    for result in evaluation.findings:
        out.append(f"{result.finding_code} (n={result.n})")
        out.append("  expected \\ extracted  " + "  ".join(f"{g.value:>{width}}" for g in LABELS))
        for expected in LABELS:
            counts = "  ".join(f"{result.confusion[(expected, g)]:>{width}}" for g in LABELS)
            out.append(f"  {expected.value:<20} {counts}")
        out.append(f"  accuracy {result.accuracy}")
        for label in LABELS:
            out.append(f"  {label.value:<13} precision {result.precision(label)}")
            out.append(f"  {'':<13} recall    {result.recall(label)}")
        out.append("")
    out.append(f"overall accuracy {evaluation.overall}")
    return out
