"""What changes in the simulated health system, and from which day (0 = the start date).

- `protocol_change_day`: `protocol_change_site` switches its head CT protocol to a
  low-dose thin-slice one (protocol name, kVp 120 -> 100, slice 5 mm -> 2.5 mm). Input
  drift only: the tools' performance is unchanged.
- `model_update_day`: the vendor ships a new `software_version` of `model_update_tool`;
  the operating point (sensitivity/specificity at the threshold) is kept, the score
  distribution becomes more confident (see `scores.UPDATED_SHAPE`).
- `new_scanner_software_day`: a scanner at `new_scanner_software_site` reports a software
  version never seen before. Input change only.
- `sensitivity_drop_day`: `drop_tool` silently loses sensitivity to `drop_to` (same
  version, same specificity).
- `triage_speedup`: reports of studies any of their tools flagged positive come after
  this fraction of the usual delay (1.0: triage makes no difference to reading order).
- `outage_day`: `outage_tool` stops running on the main scanner (the first) of
  `outage_site` for `outage_days` days: those studies are reported, but get no AI result.
"""

from __future__ import annotations

from dataclasses import dataclass

from surveillance.errors import SurveillanceError


class ScenarioError(SurveillanceError):
    """An unknown scenario name or an impossible scenario setting."""


@dataclass(frozen=True)
class Scenario:
    protocol_change_day: int | None = None
    protocol_change_site: str = "site-b"
    model_update_day: int | None = None
    model_update_tool: str = "ich-triage"
    new_scanner_software_day: int | None = None
    sensitivity_drop_day: int | None = None
    drop_tool: str = "ptx-triage"
    drop_to: float = 0.82
    new_scanner_software_site: str = "site-c"
    outage_day: int | None = None
    outage_tool: str = "ich-triage"
    outage_site: str = "site-b"
    outage_days: int = 7
    triage_speedup: float = 1.0


PROTOCOL_CHANGE_DAY = 45
MODEL_UPDATE_DAY = 40
SENSITIVITY_DROP_DAY = 30
NEW_SCANNER_SOFTWARE_DAY = 60
OUTAGE_DAY = 50
TRIAGE_SPEEDUP = 0.4

NAMED_SCENARIOS: dict[str, Scenario] = {
    "stable": Scenario(),
    "protocol_change": Scenario(protocol_change_day=PROTOCOL_CHANGE_DAY),
    "model_update": Scenario(model_update_day=MODEL_UPDATE_DAY),
    "sensitivity_drop": Scenario(sensitivity_drop_day=SENSITIVITY_DROP_DAY),
    "new_scanner_software": Scenario(new_scanner_software_day=NEW_SCANNER_SOFTWARE_DAY),
    "scanner_outage": Scenario(outage_day=OUTAGE_DAY),
    "triage_speedup": Scenario(triage_speedup=TRIAGE_SPEEDUP),
    "all": Scenario(
        protocol_change_day=PROTOCOL_CHANGE_DAY,
        model_update_day=MODEL_UPDATE_DAY,
        new_scanner_software_day=NEW_SCANNER_SOFTWARE_DAY,
        sensitivity_drop_day=SENSITIVITY_DROP_DAY,
    ),
}


def scenario_by_name(name: str) -> Scenario:
    try:
        return NAMED_SCENARIOS[name]
    except KeyError:
        known = ", ".join(NAMED_SCENARIOS)
        raise ScenarioError(f"unknown scenario {name!r}; choose one of: {known}") from None
