"""The committee's verdict on one tool for the quarter: keep, watch or act, with reasons.

Read from the review dict (`quarterly_review.build_review`) only, so the verdict can never
disagree with the figures behind it. Five topics, one sentence each:

- baseline: "act" when a metric is below its clearance baseline (one-sided test); "watch"
  when there are too few cases to tell;
- drift: "watch" when any drift or CUSUM alert was raised in the quarter (drift changes
  what the tool sees; it is a reason to look, not proof of harm);
- coverage: "act" when any site-week was below the floor (no figure: said, not judged);
- adverse events: "act" for any serious outcome, "watch" for non-serious ones;
- unvalidated versions: "act" when a version ran on patients while flagged unvalidated
  or failing local acceptance; "watch" while the evidence is insufficient.

The tool's verdict is the most severe of the five.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any, Literal

Level = Literal["keep", "watch", "act"]
_RANK: dict[Level, int] = {"keep": 0, "watch": 1, "act": 2}
SERIOUS = frozenset({"death", "life_threatening", "hospitalization", "disability",
                     "required_intervention", "other_serious"})
_DRIFT_ALERTS = frozenset({"cusum_signal", "input_drift", "output_drift", "new_category",
                           "embedding_drift", "label_free_warning"})
TOPICS = ("baseline", "drift", "coverage", "adverse events", "unvalidated versions")


@dataclass(frozen=True, slots=True)
class Reason:
    topic: str
    level: Level
    sentence: str


@dataclass(frozen=True, slots=True)
class Verdict:
    tool_id: str
    display_name: str
    level: Level
    reasons: tuple[Reason, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level,
                "reasons": [{"topic": r.topic, "level": r.level, "sentence": r.sentence}
                            for r in self.reasons]}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _baseline(review: dict[str, Any]) -> Reason:
    rows = review["baseline_comparison"]
    below = [b for b in rows if b["verdict"] == "below baseline"]
    if below:
        b = below[0]
        o = b["observed"]
        return Reason("baseline", "act",
                      f"{b['metric'].capitalize()} {_pct(o['value'])} (95% CI "
                      f"{_pct(o['lower'])} to {_pct(o['upper'])}, n={o['denominator']}) is "
                      f"below the clearance baseline {_pct(b['baseline'])} less the "
                      f"{100 * b['tolerance']:.0f}-point tolerance.")
    short = [b for b in rows if b["verdict"] == "insufficient data"]
    if short:
        b = short[0]
        return Reason("baseline", "watch",
                      f"Too few cases to compare {b['metric']} with the baseline "
                      f"({b['observed']['denominator']} of the {b['min_count']} needed).")
    parts = " and ".join(f"{b['metric']} {_pct(b['observed']['value'])}" for b in rows)
    return Reason("baseline", "keep",
                  f"{parts[:1].upper() + parts[1:]} are consistent with the clearance "
                  "baseline.")


def _drift(review: dict[str, Any]) -> Reason:
    # Drift alerts are also in review["drift"] (source "alert"); counting alerts once.
    alerts = [a for a in review["alerts"] if a["kind"] in _DRIFT_ALERTS]
    if not alerts:
        return Reason("drift", "keep", "No drift or CUSUM alert was raised in the quarter.")
    kinds = sorted({a["kind"].replace("_", " ") for a in alerts})
    first = min(str(a["raised_at"]) for a in alerts)
    return Reason("drift", "watch",
                  f"{len(alerts)} drift or CUSUM alert(s) in the quarter "
                  f"({', '.join(kinds)}), the first on {first[:10]}.")


def _coverage(coverage: Sequence[dict[str, Any]] | None) -> Reason:
    if coverage is None:
        # Unknown is not a finding about the tool: it does not raise the verdict, but the
        # sentence says the committee has no figure (the live CoverageBelowFloor alert
        # watches it meanwhile).
        return Reason("coverage", "keep",
                      "Coverage of eligible studies is not in the store for this quarter; "
                      "the live coverage alert watches it.")
    below = [c for c in coverage if c["below_floor"]]
    if below:
        sites = sorted({c["site"] for c in below})
        worst = min(below, key=lambda c: c["share"])
        return Reason("coverage", "act",
                      f"The tool read {_pct(worst['share'])} of eligible studies at "
                      f"{worst['site']} in the week of {worst['week_start']}, below its floor "
                      f"of {_pct(worst['floor'])} ({len(below)} site-week(s) at "
                      f"{', '.join(sites)}).")
    eligible = sum(c["eligible"] for c in coverage)
    covered = sum(c["covered"] for c in coverage)
    share = covered / eligible if eligible else None
    return Reason("coverage", "keep",
                  f"The tool read {_pct(share)} of {eligible} eligible studies, above its "
                  "floor at every site and week.")


def _adverse(review: dict[str, Any]) -> Reason:
    events = review["adverse_events"]
    serious = [e for e in events if e["outcome"] in SERIOUS]
    if serious:
        outcomes = sorted({e["outcome"].replace("_", " ") for e in serious})
        return Reason("adverse events", "act",
                      f"{len(serious)} serious adverse event(s) ({', '.join(outcomes)}) of "
                      f"{len(events)} reported in the quarter.")
    if events:
        return Reason("adverse events", "watch",
                      f"{len(events)} non-serious adverse event(s) reported in the quarter.")
    return Reason("adverse events", "keep", "No adverse event was reported in the quarter.")


def _versions(review: dict[str, Any]) -> Reason:
    versions = review["model_versions"]
    flagged = [v for v in versions if v["flagged_unvalidated"]]
    failing = [v for v in versions
               if v["validation"]["status"] == "fails acceptance" and v not in flagged]
    if flagged or failing:
        parts = []
        if flagged:
            parts.append(f"version(s) {', '.join(v['software_version'] for v in flagged)} "
                         f"read {sum(v['volume'] for v in flagged)} studies while flagged "
                         "as not validated for use")
        if failing:
            parts.append(f"version(s) {', '.join(v['software_version'] for v in failing)} "
                         "failed local acceptance")
        text = "; ".join(parts)
        return Reason("unvalidated versions", "act", f"{text[:1].upper()}{text[1:]}.")
    pending = [v for v in versions if v["validation"]["status"] == "insufficient evidence"]
    if pending:
        names = ", ".join(v["software_version"] for v in pending)
        return Reason("unvalidated versions", "watch",
                      f"Local validation of version(s) {names} still lacks cases.")
    names = ", ".join(v["software_version"] for v in versions) or "none"
    return Reason("unvalidated versions", "keep",
                  f"Every version in use ({names}) met local acceptance.")


def tool_verdict(
    review: dict[str, Any], coverage: Sequence[dict[str, Any]] | None = None
) -> Verdict:
    """The verdict and its five reasons; `coverage` rows as in `clinical.coverage`."""
    reasons = (_baseline(review), _drift(review), _coverage(coverage), _adverse(review),
               _versions(review))
    level = max((r.level for r in reasons), key=_RANK.__getitem__)
    tool = review["tool"]
    return Verdict(tool["tool_id"], tool["display_name"], level, reasons)


_COLOURS: dict[str, str] = {"keep": "#1b7837", "watch": "#b35806", "act": "#b2182b"}


def verdict_html(verdict: dict[str, Any], display_name: str) -> str:
    """The verdict block that opens the HTML review (text escaped)."""
    level = verdict["level"]
    items = "".join(
        f'<li data-topic="{escape(r["topic"])}"><strong>{escape(r["topic"].capitalize())}'
        f' ({escape(r["level"])}):</strong> {escape(r["sentence"])}</li>'
        for r in verdict["reasons"]
    )
    return (
        f'<section class="verdict" id="verdict" data-level="{escape(level)}">'
        f"<h2>Verdict for the committee: "
        f'<span style="color:{_COLOURS[level]}">{escape(level.upper())}</span></h2>'
        f"<p>{escape(display_name)}: <strong>{escape(level)}</strong>.</p><ul>{items}</ul>"
        "</section>"
    )


def verdict_lines(verdict: dict[str, Any]) -> list[str]:
    """The verdict as the first lines of the PDF's first page."""
    lines = [f"VERDICT FOR THE COMMITTEE: {verdict['level'].upper()}", ""]
    for r in verdict["reasons"]:
        lines.append(f"  {r['topic'].capitalize()} ({r['level']}): {r['sentence']}")
    return [*lines, ""]
