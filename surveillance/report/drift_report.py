"""Evidently drift report comparing AI-result feature rows of two periods.

`write_drift_report(reference_rows, current_rows, out_dir, title)` runs Evidently's
(0.7.x) `Report([DataDriftPreset()])` and writes `<slug>.html` (Evidently's interactive
report, with `title` as the page title) and `<slug>.json`:

    {"title": ..., "n_reference": ..., "n_current": ...,
     "features": {name: {"method": ..., "threshold": ..., "value": ..., "drifted": ...}},
     "drifted_columns": {"count": ..., "share": ...},
     "evidently": <Evidently's own snapshot dict>}

Rows are dicts (e.g. `surveillance.stats.drift_features.feature_row(ai_result)`) or a pandas
DataFrame. Column types: the drift bank's features keep their kind (numeric or
categorical); any other column is numeric if pandas sees numbers, else categorical.
Evidently picks each column's test itself (by type and size: K-S or Wasserstein for
numbers, chi-square, Z or Jensen-Shannon for categories). A method that reports a
p-value drifts when value < threshold; a distance drifts when value >= threshold.

Evidently 0.7.23 needs pandas < 3 (it imports a helper pandas 3 removed).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from surveillance.errors import SurveillanceError
from surveillance.stats.drift_features import FEATURES_BY_NAME

Rows: TypeAlias = Sequence[Mapping[str, Any]] | pd.DataFrame


class DriftReportError(SurveillanceError):
    """The rows given to the drift report cannot be compared."""


def _frame(rows: Rows, which: str) -> pd.DataFrame:
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:
        raise DriftReportError(f"the {which} period has no rows; give at least one row")
    return frame


def _definition(columns: Sequence[str], frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    numeric: list[str] = []
    categorical: list[str] = []
    for col in columns:
        spec = FEATURES_BY_NAME.get(col)
        is_numeric = spec.kind == "numeric" if spec else pd.api.types.is_numeric_dtype(frame[col])
        (numeric if is_numeric else categorical).append(col)
    return numeric, categorical


def _prepare(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    out = frame[numeric + categorical].copy()
    for col in numeric:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    for col in categorical:
        out[col] = out[col].map(lambda v: None if v is None or v != v else str(v))
    return out


def _feature_results(snapshot_dict: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    features: dict[str, dict[str, Any]] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        method, threshold, value = (
            str(config["method"]),
            float(config["threshold"]),
            metric["value"],
        )
        is_p_value = "p_value" in method
        drifted = value < threshold if is_p_value else value >= threshold
        features[str(config["column"])] = {
            "method": method,
            "threshold": threshold,
            "value": float(value),
            "drifted": bool(drifted),
        }
    return features


def _slug(title: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()
    return slug or "drift-report"


def write_drift_report(
    reference_rows: Rows, current_rows: Rows, out_dir: Path | str, title: str
) -> tuple[Path, Path]:
    """Write the HTML and JSON drift report of `current_rows` against `reference_rows`."""
    reference = _frame(reference_rows, "reference")
    current = _frame(current_rows, "current")
    columns = [c for c in reference.columns if c in current.columns]
    usable = [c for c in columns if reference[c].notna().any() and current[c].notna().any()]
    if not usable:
        raise DriftReportError("the two periods share no column with values; nothing to compare")
    numeric, categorical = _definition(usable, reference)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(_prepare(current, numeric, categorical), data_definition=definition),
        Dataset.from_pandas(_prepare(reference, numeric, categorical), data_definition=definition),
        name=title,
    )
    evidently_dict = snapshot.dict()
    drifted = next(
        (
            m["value"]
            for m in evidently_dict.get("metrics", [])
            if m.get("config", {}).get("type") == "evidently:metric_v2:DriftedColumnsCount"
        ),
        None,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / f"{_slug(title)}.html"
    json_path = out / f"{_slug(title)}.json"
    page = snapshot.get_html_str(as_iframe=False)
    page = page.replace("<head>", f"<head><title>{html.escape(title)}</title>", 1)
    html_path.write_text(page, encoding="utf-8")
    summary = {
        "title": title,
        "n_reference": len(reference),
        "n_current": len(current),
        "features": _feature_results(evidently_dict),
        "skipped_columns": [c for c in columns if c not in usable],
        "drifted_columns": drifted,
        "evidently": evidently_dict,
    }
    json_path.write_text(json.dumps(summary, default=str, indent=1), encoding="utf-8")
    return html_path, json_path
