"""`surveillance labels ...`: how well report labels are extracted, and why one came out so."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

labels_app = typer.Typer(no_args_is_help=True, help="Report-label extraction (quality staff).")
Vocab = Annotated[
    Path | None, typer.Option("--vocabulary", help="a finding vocabulary (default: shipped)")
]


@labels_app.command("evaluate")
def labels_evaluate(
    gold: Annotated[Path, typer.Option(help="TSV: finding code, expected label, text")],
    vocabulary: Vocab = None,
    show_misses: Annotated[bool, typer.Option(help="print each wrong line")] = False,
) -> None:
    """Accuracy of extraction on a gold file; each figure with its Wilson 95% interval."""
    from surveillance.clinical.label_evaluation import evaluate, format_evaluation, read_gold
    from surveillance.clinical.label_vocabulary import load_vocabulary

    vocab = load_vocabulary(vocabulary) if vocabulary else None
    result = evaluate(read_gold(gold), vocab)
    if show_misses:
        for row, got in result.misses:
            typer.echo(f"line {row.line}: {row.finding_code} expected {row.expected.value}, "
                       f"got {got.value}: {row.text!r}")
        typer.echo("")
    for line in format_evaluation(result):
        typer.echo(line)


@labels_app.command("explain")
def labels_explain(
    text: Annotated[str, typer.Argument(help="report or impression text")],
    finding: Annotated[str, typer.Option(help="a finding code, e.g. pulmonary_embolism")],
    vocabulary: Vocab = None,
) -> None:
    """Which mention and which trigger decided the label of one finding in a text."""
    from surveillance.clinical.label_vocabulary import load_vocabulary
    from surveillance.clinical.labels import explain_label

    vocab = load_vocabulary(vocabulary) if vocabulary else None
    result = explain_label(text, finding, vocab)
    where = result.decided_by.value if result.decided_by else "no mention"
    typer.echo(f"{finding}: {result.label.value} (decided by: {where})")
    deciding = set(result.deciding)
    for m in result.mentions:
        mark = "*" if m in deciding else " "
        trigger = f'trigger "{m.trigger}"' if m.trigger else "no trigger"
        typer.echo(f'{mark} [{m.section.value} {m.section_index}] "{m.term}" {m.state.value}, '
                   f'{trigger}; clause: "{m.clause}"')
