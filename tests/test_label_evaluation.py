"""`surveillance labels evaluate / explain`: the gold file, the figures, the written corpus."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from statsmodels.stats.proportion import proportion_confint

from surveillance.clinical.label_evaluation import (
    GoldFileError,
    GoldRow,
    evaluate,
    format_evaluation,
    read_gold,
)
from surveillance.contracts import Label

DATA = Path(__file__).parent / "data"
DEV, HELD_OUT = DATA / "labels_dev.tsv", DATA / "labels_heldout.tsv"
FINDINGS = {"intracranial_hemorrhage", "large_vessel_occlusion", "pneumothorax",
            "mtm_diabetic_retinopathy", "pulmonary_embolism", "aortic_dissection"}
P, A, U = Label.PRESENT, Label.ABSENT, Label.INDETERMINATE


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surveillance.cli", *args],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_read_gold_skips_comments_and_unescapes_line_breaks(tmp_path: Path) -> None:
    gold = tmp_path / "g.tsv"
    gold.write_text("# a comment\n\npneumothorax\tABSENT\tIMPRESSION: No PTX.\\nADDENDUM: ok.\n"
                    "pulmonary_embolism\tpresent\tSaddle embolus.\twith a tab\n")
    assert read_gold(gold) == [
        GoldRow(3, "pneumothorax", A, "IMPRESSION: No PTX.\nADDENDUM: ok."),
        GoldRow(4, "pulmonary_embolism", P, "Saddle embolus.\twith a tab"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pneumothorax\tpresent\n", "line 1: expected 3 tab-separated columns"),
        ("pneumothorax  present  text\n", "line 1: expected 3 tab-separated columns"),
        ("# only\n\npneumothorax\tmaybe\tNo PTX.\n", "line 3: label 'maybe' is not one of"),
        ("# nothing but comments\n", "has no labelled lines"),
    ],
)
def test_bad_gold_files_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    gold = tmp_path / "g.tsv"
    gold.write_text(content)
    with pytest.raises(GoldFileError, match=message):
        read_gold(gold)


def test_an_unknown_finding_code_names_its_line() -> None:
    rows = [ROWS[0], GoldRow(9, "pe", P, "Saddle embolus.")]
    with pytest.raises(GoldFileError, match=r"gold line 9: finding code 'pe' is not in the "
                                            r"vocabulary \(known: aortic_dissection, "):
        evaluate(rows)


def test_unreadable_gold_files(tmp_path: Path) -> None:
    with pytest.raises(GoldFileError, match="cannot read gold file"):
        read_gold(tmp_path / "missing.tsv")
    binary = tmp_path / "b.tsv"
    binary.write_bytes(b"\xff\xfe\x00pneumothorax")
    with pytest.raises(GoldFileError, match="is not UTF-8 text"):
        read_gold(binary)


# Sentences whose extracted label is known (tests/test_label_rules.py pins them), given
# gold labels chosen to make a known confusion table: 4 right of 6 for pneumothorax.
ROWS = [
    GoldRow(1, "pneumothorax", P, "Small left pneumothorax."),              # P -> P
    GoldRow(2, "pneumothorax", P, "No pneumothorax."),                      # P -> A
    GoldRow(3, "pneumothorax", A, "No pneumothorax."),                      # A -> A
    GoldRow(4, "pneumothorax", A, "Possible small pneumothorax."),          # A -> U
    GoldRow(5, "pneumothorax", U, "Pneumothorax cannot be excluded."),      # U -> U
    GoldRow(6, "pneumothorax", A, "Pneumothorax: None."),                   # A -> A
    GoldRow(7, "pulmonary_embolism", P, "Saddle embolus."),                 # P -> P
]


def _wilson(k: int, n: int) -> tuple[float, float]:
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(low), float(high)


def test_confusion_table_and_figures_match_an_independent_wilson() -> None:
    result = evaluate(ROWS)
    ptx, pe = result.findings[0], result.findings[1]
    assert (pe.finding_code, ptx.finding_code) == ("pulmonary_embolism", "pneumothorax")
    assert dict(ptx.confusion) == {(P, P): 1, (P, A): 1, (A, A): 2, (A, U): 1, (U, U): 1}
    assert (ptx.accuracy.successes, ptx.accuracy.n) == (4, 6)
    assert ptx.accuracy.interval == pytest.approx(_wilson(4, 6), abs=1e-12)
    # precision: of those called absent, 2 of 3 are absent; recall: of 3 absent, 2 found.
    assert (ptx.precision(A).successes, ptx.precision(A).n) == (2, 3)
    assert (ptx.recall(A).successes, ptx.recall(A).n) == (2, 3)
    assert (ptx.precision(U).successes, ptx.precision(U).n) == (1, 2)
    assert (ptx.recall(P).successes, ptx.recall(P).n) == (1, 2)
    assert ptx.precision(P).interval == pytest.approx(_wilson(1, 1), abs=1e-12)
    assert result.overall.successes == 5 and result.overall.n == 7
    assert [row.line for row, _ in result.misses] == [2, 4]


def test_report_ends_with_the_overall_line() -> None:
    lines = format_evaluation(evaluate(ROWS))
    low, high = _wilson(5, 7)
    assert lines[-1] == f"overall accuracy {5 / 7:.3f} (95% CI {low:.3f}-{high:.3f}, n=7)"
    assert "  absent        precision 0.667" in "\n".join(lines)
    # A class never called has no precision to report.
    assert "  present       precision n/a (n=0)" in format_evaluation(
        evaluate([GoldRow(1, "pneumothorax", A, "No pneumothorax.")])
    )


def test_cli_evaluate_prints_tables_and_misses(tmp_path: Path) -> None:
    gold = tmp_path / "g.tsv"
    gold.write_text("".join(f"{r.finding_code}\t{r.expected.value}\t{r.text}\n" for r in ROWS))
    result = run("labels", "evaluate", "--gold", str(gold), "--show-misses")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == ("line 2: pneumothorax expected present, got absent: 'No pneumothorax.'")
    assert out[-1].startswith("overall accuracy 0.714 (95% CI ")
    assert "pneumothorax (n=6)" in out


def test_cli_explain_and_user_errors(tmp_path: Path) -> None:
    result = run("labels", "explain", "--finding", "pulmonary_embolism",
                 "IMPRESSION: No central PE. Possible subsegmental embolus.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "pulmonary_embolism: indeterminate (decided by: impression)",
        '  [impression 1] "pe" negated, trigger "no"; clause: "no central pe."',
        '* [impression 1] "embolus" uncertain, trigger "possible"; clause: '
        '"possible subsegmental embolus."',
    ]
    bad = tmp_path / "bad.tsv"
    bad.write_text("pneumothorax\tsure\tNo PTX.\n")
    for args in (("labels", "evaluate", "--gold", str(bad)),
                 ("labels", "evaluate", "--gold", str(tmp_path / "none.tsv")),
                 ("labels", "explain", "--finding", "pe", "No PE.")):
        failed = run(*args)
        assert failed.returncode == 2, failed.stderr
        assert "Traceback" not in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr


# The written corpus: its shape, and the accuracy the README states.

def test_corpus_is_large_balanced_and_has_no_shared_sentences() -> None:
    dev, held_out = read_gold(DEV), read_gold(HELD_OUT)
    assert len(dev) + len(held_out) >= 400
    for rows in (dev, held_out):
        assert {(r.finding_code, r.expected) for r in rows} == {
            (code, label) for code in FINDINGS for label in Label
        }
    assert not {r.text for r in dev} & {r.text for r in held_out}


def test_held_out_accuracy_meets_the_target() -> None:
    result = evaluate(read_gold(HELD_OUT))
    assert result.overall.value >= 0.97
    assert all(f.accuracy.value >= 0.95 for f in result.findings), [
        (f.finding_code, f.accuracy.value) for f in result.findings
    ]
    last = format_evaluation(result)[-1]
    assert re.fullmatch(r"overall accuracy 0\.\d{3} \(95% CI 0\.\d{3}-[01]\.\d{3}, n=\d+\)", last)


def test_development_accuracy() -> None:
    assert evaluate(read_gold(DEV)).overall.value >= 0.99
