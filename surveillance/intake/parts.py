"""What the intake's routes share, built once per app by `create_app`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from surveillance.clinical.baselines import ToolBaseline
from surveillance.intake.config import IntakeSettings
from surveillance.intake.gates import Gates
from surveillance.intake.reading import Reader
from surveillance.intake.service import IntakeService
from surveillance.intake.store import ReportStore


@dataclass(frozen=True)
class IntakeParts:
    cfg: IntakeSettings
    tools: Mapping[str, ToolBaseline]
    #: The facility's aware "now" (tests pin it).
    now: Callable[[], datetime]
    store: ReportStore
    service: IntakeService
    gates: Gates
    reader: Reader
