"""Evidently drift report: both files written, JSON carries per-feature drift results."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surveillance.report.drift_report import DriftReportError, write_drift_report


def _rows(seed: int, n: int, shifted: bool) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    protocols = rng.choice(
        ["HEAD ROUTINE", "HEAD TRAUMA", "HEAD STROKE"],
        n,
        p=[0.2, 0.1, 0.7] if shifted else [0.7, 0.2, 0.1],
    )
    thickness = rng.choice(
        [0.625, 1.25, 2.5, 5.0], n, p=[0.7, 0.2, 0.1, 0.0] if shifted else [0.1, 0.2, 0.3, 0.4]
    )
    return [
        {
            "protocol_name": str(protocols[i]),
            "slice_thickness": float(thickness[i]),
            "score": float(rng.beta(1.2, 6.0)),
            "site": str(rng.choice(["site-a", "site-b"])),
            "kvp": None,  # never sent (e.g. fundus): skipped, not an error
        }
        for i in range(n)
    ]  # fmt: skip


def test_write_drift_report_html_and_json(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        html_path, json_path = write_drift_report(
            _rows(1, 600, False), _rows(2, 300, True), tmp_path, "ich-triage Q2 vs validation"
        )
    assert html_path == tmp_path / "ich-triage-q2-vs-validation.html"
    assert json_path == tmp_path / "ich-triage-q2-vs-validation.json"
    page = html_path.read_text(encoding="utf-8")
    assert "<title>ich-triage Q2 vs validation</title>" in page
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert report["title"] == "ich-triage Q2 vs validation"
    assert (report["n_reference"], report["n_current"]) == (600, 300)
    assert set(report["features"]) == {"protocol_name", "slice_thickness", "score", "site"}
    assert report["skipped_columns"] == ["kvp"]
    for result in report["features"].values():
        assert set(result) == {"method", "threshold", "value", "drifted"}
    assert report["features"]["protocol_name"]["drifted"] is True
    assert report["features"]["slice_thickness"]["drifted"] is True
    assert report["drifted_columns"]["count"] >= 2
    assert report["evidently"]["metrics"]


def test_dataframe_input_and_empty_period(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, json_path = write_drift_report(
            pd.DataFrame(_rows(3, 300, False)), pd.DataFrame(_rows(4, 300, False)), tmp_path, "t"
        )
    assert "score" in json.loads(json_path.read_text())["features"]
    with pytest.raises(DriftReportError, match="current period has no rows"):
        write_drift_report(_rows(3, 10, False), [], tmp_path, "t")
