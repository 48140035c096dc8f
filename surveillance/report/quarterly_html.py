"""The quarterly review as one self-contained HTML file.

No external resource of any kind: styles inline, figures embedded as base64 PNG. Every
piece of text from data (tool names, alert summaries, ids) goes through `html.escape`.
"""

from __future__ import annotations

import base64
from html import escape
from importlib import resources
from string import Template
from typing import Any

from surveillance.report.column_labels import human_label
from surveillance.report.quarterly_tables import Table, cell
from surveillance.report.quarterly_verdict import verdict_html

_TEXT_COLUMNS = frozenset({"summary", "basis", "not_passed", "verdict"})


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(human_label(c))}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for column, value in zip(table.columns, row, strict=True):
            css = ' class="text"' if column in _TEXT_COLUMNS or isinstance(value, str) else ""
            cells.append(f"<td{css}>{escape(cell(value, column))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<h2>{escape(table.title)}</h2>\n<div class="scroll"><table><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _image(name: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{escape(name)}" src="data:image/png;base64,{encoded}">'


def render_html(review: dict[str, Any], tables: list[Table], images: dict[str, bytes]) -> str:
    tool = review["tool"]
    title = f"{tool['display_name']} — quarterly performance review {review['quarter']}"
    by_name = {t.name: t for t in tables}
    parts = [
        f"<h1>{escape(title)}</h1>",
        verdict_html(review["verdict"], tool["display_name"]) if "verdict" in review else "",
        '<p class="note">'
        + escape(
            f"Tool {tool['tool_id']} ({tool['manufacturer']} {tool['product']}, clearance "
            f"{tool['clearance']}), finding {tool['finding_code']}, operating threshold "
            f"{tool['operating_threshold']}. Cases by study date "
            f"{review['period']['start']} to {review['period']['end']}; regulatory status as "
            f"of {review['status_as_of']}. Only cases with a definitive read (TP/FP/TN/FN) "
            "enter agreement figures; pending, unlabelled and indeterminate cases are counted "
            "separately. Intervals are 95% Wilson (kappa: Wald, Fleiss-Cohen-Everitt SE)."
        )
        + "</p>",
        _table(by_name["baseline_comparison"]),
        _table(by_name["performance"]),
        "<h2>Trend</h2>",
        _image("weekly trend", images["trend"]),
        _table(by_name["weekly"]),
        _image("subgroups", images["subgroups"]),
        _table(by_name["subgroups"]),
        _table(by_name["model_versions"]),
        "<h2>CUSUM chart of each model version</h2>",
        _image("CUSUM charts per model version", images["cusum"]),
        _table(by_name["cusum"]),
        "<h2>Drift</h2>",
        _image("drift timeline", images["drift"]),
        _table(by_name["drift"]),
        _table(by_name["alerts"]),
        _table(by_name["adverse_events"]),
    ]
    template = Template(
        (resources.files("surveillance.report") / "templates" / "quarterly.html").read_text()
    )
    return template.substitute(title=escape(title), body="\n".join(parts))
