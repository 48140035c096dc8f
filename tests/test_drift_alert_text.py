"""Every drift alert fits the `Alert` contract, whatever the names and how many.

The monitor's all-sites alert once exceeded the contract's 1,000-character summary with
forty long site names: a ValidationError inside the worker, so a crash loop. Here the
drift bank raises real verdicts (new categories, a concentrated shift with a likely
cause) on streams whose site, scanner, protocol, tool and version names are as long as
the contracts allow and as many as hypothesis draws; each verdict must become an
`Alert` and every text stays within its bound.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveillance.contracts import Acquisition, AIResult, Alert, Scanner, Sex
from surveillance.stats.drift_bank import DriftBank, DriftBankConfig
from surveillance.stats.drift_calibration_cache import Calibrations
from surveillance.stats.drift_verdict import SUMMARY_LIMIT
from surveillance.stats.drift_wording import HINT_PARTS, NAME_LIMIT

START = datetime(2026, 5, 4, tzinfo=UTC)
CONFIG = DriftBankConfig(
    features=("protocol_name", "scanner_model", "site", "kvp"), min_window_events=5,
    calibration_quarters=10, reference_days=3, min_reference_events=30,
)
CALIBRATIONS = Calibrations()
# Printable names up to the contracts' limits (Id: 128, ShortText: 256), no edge blanks.
name = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1)


def result(i: int, at: datetime, tool: str, version: str, site: str, model: str,
           protocol: str, kvp: float) -> AIResult:
    return AIResult(
        event_id=f"e{i}", tool_id=tool, manufacturer="V", model="M", software_version=version,
        finding_code="f", ai_result=0.2, operating_threshold=0.5, result_indicator=False,
        patient_id="p", accession_number="a", study_instance_uid="u", study_date=at.date(),
        site=site, modality="CT", body_part_examined="HEAD",
        scanner=Scanner(manufacturer="GE", model=model, software_version="1"),
        acquisition=Acquisition(kvp=kvp, slice_thickness=5.0, pixel_spacing=0.5,
                                protocol_name=protocol),
        age=50, sex=Sex.MALE, inference_date=at, pseudonymized=True,
    )  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tool=name.map(lambda s: s[:128]),
    version=name.map(lambda s: s[:128]),
    sites=st.lists(name.map(lambda s: ("s" + s * 40)[:128]), min_size=2, max_size=40,
                   unique=True),
    models=st.lists(name.map(lambda s: ("m" + s * 80)[:256]), min_size=2, max_size=6,
                    unique=True),
    protocols=st.lists(name.map(lambda s: ("p" + s * 80)[:256]), min_size=3, max_size=30,
                       unique=True),
)
def test_every_drift_alert_fits_the_contract(
    tool: str, version: str, sites: list[str], models: list[str], protocols: list[str]
) -> None:
    """Three reference days on the first site, model and protocol (with a second model
    and protocol now and then); then every site sees new models and protocols at a new
    kVp, and the first site the most: new-category notices, shifts with likely causes."""
    tool, version = tool.strip() or "t", version.strip() or "v"
    sites = list(dict.fromkeys(s.strip() for s in sites))
    events = []
    for i in range(3 * 60):
        k = i % 10 == 0
        events.append(result(i, START + timedelta(minutes=24 * i), tool, version,
                             sites[i % 2 == 0 and len(sites) > 1], models[k],
                             protocols[k], 120.0))
    for j in range(600):
        i = 1000 + j
        at = START + timedelta(days=3, minutes=7 * j)
        site = sites[0] if j % 2 else sites[j % len(sites)]
        events.append(result(i, at, tool, version, site, models[j % len(models)],
                             protocols[j % len(protocols)], 140.0 if j % 3 else 120.0))
    bank = DriftBank.for_tool(tool, CONFIG, CALIBRATIONS)
    verdicts = [v for e in events for v in bank.update(e)]
    verdicts += bank.advance(START + timedelta(days=10))
    assert {v.kind for v in verdicts} >= {"new_category", "input_drift"}
    for verdict in verdicts:
        alert = Alert.model_validate(verdict.to_alert().model_dump())
        assert len(alert.summary) <= SUMMARY_LIMIT
        assert len(verdict.change) <= 2 * (NAME_LIMIT + 20) + 20
        if verdict.cause_hint:
            assert verdict.cause_hint.count("; ") < HINT_PARTS
            assert len(verdict.cause_hint) <= HINT_PARTS * (NAME_LIMIT + 80)
