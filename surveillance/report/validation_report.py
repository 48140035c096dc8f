"""The local-validation report of one tool version: self-contained HTML and JSON.

The JSON is `ValidationResult` as-is (the numbers the lifecycle evidence hashes); the HTML
is one file with inline CSS, no scripts and no external resources, every value escaped, so
it can be attached to governance minutes or opened offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from pathlib import Path

from surveillance.clinical.baselines import RegistryError, ToolBaseline
from surveillance.clinical.validation import Proportion, Status, ValidationResult, validate
from surveillance.contracts import AdjudicatedCase

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left}
.pass{color:#116611}.fail{color:#aa1111;font-weight:bold}.insufficient{color:#886600}
"""


def to_json(result: ValidationResult) -> str:
    return json.dumps(result.model_dump(mode="json"), indent=2, sort_keys=True)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _proportion(p: Proportion) -> str:
    return f"{p.successes}/{p.n} = {_fmt(p.value)} [{_fmt(p.lower)}, {_fmt(p.upper)}]"


def _row(cells: list[str], header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _status(status: Status) -> str:
    return f'<span class="{status.value}">{escape(status.value)}</span>'


def to_html(result: ValidationResult, generated_at: datetime) -> str:
    e = escape
    version = result.software_version or "all versions"
    verdict = Status.PASS if result.passed else Status.FAIL
    level = f"{result.confidence:.0%}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Local validation: {e(result.tool_id)} {e(version)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Local validation: {e(result.tool_id)} {e(version)}</h1>",
        f"<p>Verdict: {_status(verdict)}. Generated {e(generated_at.isoformat())}.</p>",
        "<h2>Counts</h2><table>",
        _row(["TP", "FP", "TN", "FN", "undecided (not counted)"], header=True),
        _row(
            [
                str(result.tp),
                str(result.fp),
                str(result.tn),
                str(result.fn),
                str(result.cases_undecided),
            ]
        ),
        "</table>",
        f"<h2>Performance ({e(level)} Wilson intervals)</h2><table>",
        _row(["metric", "estimate [interval]"], header=True),
        _row(["sensitivity", e(_proportion(result.sensitivity))]),
        _row(["specificity", e(_proportion(result.specificity))]),
        "</table>",
        "<h2>Acceptance criteria</h2><table>",
        _row(["criterion", "subgroup", "observed", "threshold", "status", "detail"], header=True),
    ]
    for c in result.criteria:
        subgroup = ", ".join(f"{k}={v}" for k, v in (c.subgroup or {}).items())
        parts.append(
            _row(
                [
                    e(c.name),
                    e(subgroup),
                    e(_fmt(c.observed)),
                    e(_fmt(c.threshold)),
                    _status(c.status),
                    e(c.detail),
                ]
            )
        )
    parts += [
        "</table>",
        "<h2>Cases needed</h2>",
        "<p>Required n: the larger of the registry minimum and the smallest n for which the "
        "Wilson lower bound reaches the criterion when the tool performs at its clearance "
        "baseline.</p><table>",
        _row(
            [
                "metric",
                "baseline",
                "criterion",
                "registry minimum",
                "required",
                "have",
                "more needed",
            ],
            header=True,
        ),
    ]
    for s in result.sample_size:
        parts.append(
            _row(
                [
                    e(s.metric),
                    e(_fmt(s.expected)),
                    e(_fmt(s.criterion)),
                    str(s.registry_minimum),
                    "not reachable" if s.required is None else str(s.required),
                    str(s.have),
                    "—" if s.more_needed is None else str(s.more_needed),
                ]
            )
        )
    parts += [
        "</table>",
        "<h2>Subgroups</h2><table>",
        _row(
            ["dimension", "level", "TP", "FP", "TN", "FN", "sensitivity", "specificity"],
            header=True,
        ),
    ]
    for g in result.subgroups:
        parts.append(
            _row(
                [
                    e(g.dimension),
                    e(g.level),
                    str(g.tp),
                    str(g.fp),
                    str(g.tn),
                    str(g.fn),
                    e(_proportion(g.sensitivity)),
                    e(_proportion(g.specificity)),
                ]
            )
        )
    parts += ["</table>", "</body></html>"]
    return "\n".join(parts) + "\n"


def write_report(
    result: ValidationResult, out_dir: Path, generated_at: datetime
) -> tuple[Path, Path]:
    """Write `<tool>-<version>-validation.{html,json}` under `out_dir`; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result.tool_id}-{result.software_version or 'all'}-validation"
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
    html_path = out_dir / f"{stem}.html"
    json_path = out_dir / f"{stem}.json"
    html_path.write_text(to_html(result, generated_at), encoding="utf-8")
    json_path.write_text(to_json(result), encoding="utf-8")
    return html_path, json_path


def run_validation(
    registry: Mapping[str, ToolBaseline],
    tool_id: str,
    version: str,
    cases: Iterable[AdjudicatedCase],
    out_dir: Path,
    generated_at: datetime,
) -> tuple[ValidationResult, Path, Path]:
    """`surveillance validate --tool T --version V`: judge, write both files, return all three."""
    tool = registry.get(tool_id)
    if tool is None:
        raise RegistryError(
            f"tool {tool_id!r} is not in the baseline registry; add it to the registry file"
        )
    result = validate(tool, cases, version)
    html_path, json_path = write_report(result, out_dir, generated_at)
    return result, html_path, json_path
