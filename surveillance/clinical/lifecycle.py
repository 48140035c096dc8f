"""Lifecycle of each tool version: shadow -> validating -> live -> suspended / retired.

Allowed transitions (anything else raises `LifecycleError`)::

    (new)      -> shadow                    register: results are only watched
    shadow     -> validating | retired
    validating -> live | shadow | retired   live needs a passed local validation
    live       -> suspended | retired
    suspended  -> validating | retired      back to live only through validation again

Every transition records who, when (UTC) and why, and, into live, the validation evidence
(counts, lower bounds and a SHA-256 of the full `ValidationResult`): the audit trail. It is
an append-only JSON-lines file, `<state_dir>/lifecycle.jsonl`; the current state of a
version is the replay of its lines. Writers take an exclusive `flock` and re-read the file
before appending, so two CLI invocations cannot both promote from the same state. A line
that does not parse, or a replay that breaks the transition rules, is reported with its
line number rather than silently skipped. `why` is governance text: keep patient
identifiers out of it.

`check_version` turns the state of the version named in an `ai.results` event into a
verdict; a version that is not live (or not registered at all) is alert-worthy.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError

from surveillance.clinical.validation import ValidationResult
from surveillance.contracts import Alert, AlertSeverity
from surveillance.errors import SurveillanceError

STATE_FILE = "lifecycle.jsonl"

Text = Annotated[str, StringConstraints(min_length=1, max_length=1_000, strip_whitespace=True)]


class LifecycleError(SurveillanceError):
    """An illegal lifecycle transition, or an unreadable lifecycle state file."""


class ToolState(StrEnum):
    SHADOW = "shadow"
    VALIDATING = "validating"
    LIVE = "live"
    SUSPENDED = "suspended"
    RETIRED = "retired"


ALLOWED: Mapping[ToolState | None, frozenset[ToolState]] = {
    None: frozenset({ToolState.SHADOW}),
    ToolState.SHADOW: frozenset({ToolState.VALIDATING, ToolState.RETIRED}),
    ToolState.VALIDATING: frozenset({ToolState.LIVE, ToolState.SHADOW, ToolState.RETIRED}),
    ToolState.LIVE: frozenset({ToolState.SUSPENDED, ToolState.RETIRED}),
    ToolState.SUSPENDED: frozenset({ToolState.VALIDATING, ToolState.RETIRED}),
    ToolState.RETIRED: frozenset(),
}

Key = tuple[str, str]  # (tool_id, software_version)


class Transition(BaseModel):
    """One line of the audit trail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool_id: Text
    software_version: Text
    from_state: ToolState | None
    to_state: ToolState
    who: Text
    at: AwareDatetime
    why: Text
    evidence: dict[str, Any] | None = None


def _evidence(result: ValidationResult, tool_id: str, version: str) -> dict[str, Any]:
    if result.tool_id != tool_id or result.software_version != version:
        raise LifecycleError(
            f"the validation is of {result.tool_id} {result.software_version}, not "
            f"{tool_id} {version}; run `surveillance validate --tool {tool_id} "
            f"--version {version}`"
        )
    if not result.passed:
        raise LifecycleError(
            f"{tool_id} {version} did not pass local validation; it cannot go live"
        )
    canonical = json.dumps(result.model_dump(mode="json"), sort_keys=True).encode()
    return {
        "validation_sha256": hashlib.sha256(canonical).hexdigest(),
        "positives": result.tp + result.fn,
        "negatives": result.tn + result.fp,
        "sensitivity_lower": result.sensitivity.lower,
        "specificity_lower": result.specificity.lower,
    }


def _check(transition: Transition, current: ToolState | None) -> None:
    if transition.from_state != current:
        raise LifecycleError(
            f"{transition.tool_id} {transition.software_version} is "
            f"{current.value if current else 'not registered'}, not "
            f"{transition.from_state.value if transition.from_state else 'unregistered'}"
        )
    if transition.to_state not in ALLOWED[current]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[current])) or "nothing"
        raise LifecycleError(
            f"{transition.tool_id} {transition.software_version} cannot go from "
            f"{current.value if current else 'unregistered'} to {transition.to_state.value}; "
            f"allowed: {allowed}"
        )
    if transition.to_state == ToolState.LIVE and transition.evidence is None:
        raise LifecycleError(
            f"{transition.tool_id} {transition.software_version} cannot go live without "
            "the evidence of a passed local validation"
        )


class LifecycleStore:
    """The audit trail in `<state_dir>/lifecycle.jsonl`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE

    def _replay(self, text: str) -> tuple[list[Transition], dict[Key, ToolState]]:
        history: list[Transition] = []
        states: dict[Key, ToolState] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                transition = Transition.model_validate_json(line)
                key = (transition.tool_id, transition.software_version)
                _check(transition, states.get(key))
            except (ValidationError, LifecycleError) as exc:
                raise LifecycleError(
                    f"lifecycle file {self.path} line {number} is invalid; restore it from "
                    f"backup ({type(exc).__name__})"
                ) from exc
            history.append(transition)
            states[key] = transition.to_state
        return history, states

    def _read(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise LifecycleError(f"cannot read lifecycle file {self.path}: {exc.strerror}") from exc

    def history(self, tool_id: str | None = None, version: str | None = None) -> list[Transition]:
        return [
            t
            for t in self._replay(self._read())[0]
            if (tool_id is None or t.tool_id == tool_id)
            and (version is None or t.software_version == version)
        ]

    def states(self) -> dict[Key, ToolState]:
        return self._replay(self._read())[1]

    def transition(
        self,
        tool_id: str,
        version: str,
        to_state: ToolState,
        who: str,
        why: str,
        at: datetime | None = None,
        validation: ValidationResult | None = None,
    ) -> Transition:
        """Check and append one transition under an exclusive lock; return it."""
        if to_state == ToolState.LIVE and validation is None:
            raise LifecycleError(
                f"{tool_id} {version} needs a passed local validation to go live; run "
                f"`surveillance validate --tool {tool_id} --version {version}`"
            )
        evidence = None if validation is None else _evidence(validation, tool_id, version)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+")
        except OSError as exc:
            raise LifecycleError(f"cannot open lifecycle file {self.path}: {exc.strerror}") from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            current = self._replay(handle.read())[1].get((tool_id, version))
            try:
                transition = Transition(
                    tool_id=tool_id,
                    software_version=version,
                    from_state=current,
                    to_state=to_state,
                    who=who,
                    at=at or datetime.now(UTC),
                    why=why,
                    evidence=evidence,
                )
            except ValidationError as exc:
                field = ".".join(str(p) for p in exc.errors()[0]["loc"])
                raise LifecycleError(
                    f"transition of {tool_id} {version}: {field} must be 1-1000 characters"
                ) from exc
            _check(transition, current)
            handle.write(transition.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return transition


# Plain functions for the CLI (`surveillance tool register|promote|suspend|retire|history`).


def register(
    state_dir: Path, tool: str, version: str, who: str, why: str, at: datetime | None = None
) -> Transition:
    """A new version enters the lifecycle in shadow."""
    return LifecycleStore(state_dir).transition(tool, version, ToolState.SHADOW, who, why, at)


def promote(
    state_dir: Path,
    tool: str,
    version: str,
    to_state: ToolState,
    who: str,
    why: str,
    validation: ValidationResult | None = None,
    at: datetime | None = None,
) -> Transition:
    """Move a version to `to_state`; into live only with a passed `validation` of it."""
    return LifecycleStore(state_dir).transition(tool, version, to_state, who, why, at, validation)


def suspend(
    state_dir: Path, tool: str, version: str, who: str, why: str, at: datetime | None = None
) -> Transition:
    return LifecycleStore(state_dir).transition(tool, version, ToolState.SUSPENDED, who, why, at)


def retire(
    state_dir: Path, tool: str, version: str, who: str, why: str, at: datetime | None = None
) -> Transition:
    return LifecycleStore(state_dir).transition(tool, version, ToolState.RETIRED, who, why, at)


def history(
    state_dir: Path, tool: str | None = None, version: str | None = None
) -> list[Transition]:
    return LifecycleStore(state_dir).history(tool, version)


@dataclass(frozen=True)
class VersionVerdict:
    tool_id: str
    software_version: str
    state: ToolState | None  # None: never registered
    alert: bool
    severity: AlertSeverity | None
    summary: str


def check_version(states: Mapping[Key, ToolState], tool_id: str, version: str) -> VersionVerdict:
    """Is a result from this version acceptable clinically? Only a live version is."""
    state = states.get((tool_id, version))
    if state == ToolState.LIVE:
        return VersionVerdict(tool_id, version, state, False, None, f"{tool_id} {version} is live")
    if state in (ToolState.SHADOW, ToolState.VALIDATING):
        severity = AlertSeverity.WARNING
        summary = (
            f"{tool_id} {version} is in {state.value}, not live: its results have not passed "
            "local validation"
        )
    elif state is None:
        severity = AlertSeverity.CRITICAL
        summary = (
            f"{tool_id} {version} is not registered: an unannounced version is producing "
            f"results; register it with `surveillance tool register` and validate it"
        )
    else:
        severity = AlertSeverity.CRITICAL
        summary = f"{tool_id} {version} is {state.value} but is still producing results"
    return VersionVerdict(tool_id, version, state, True, severity, summary)


def version_alert(verdict: VersionVerdict, raised_at: datetime) -> Alert | None:
    """The `unvalidated_version` alert of a verdict, or None for a live version.

    The alert id depends on tool, version and state only, so every result of the same
    unvalidated version maps to one alert that consumers deduplicate.
    """
    if not verdict.alert or verdict.severity is None:
        return None
    state = verdict.state.value if verdict.state else "unregistered"
    digest = hashlib.sha256(
        f"{verdict.tool_id}\0{verdict.software_version}\0{state}".encode()
    ).hexdigest()
    return Alert(
        alert_id=f"unvalidated_version:{digest[:32]}",
        kind="unvalidated_version",
        severity=verdict.severity,
        raised_at=raised_at,
        tool_id=verdict.tool_id,
        software_version=verdict.software_version,
        summary=verdict.summary,
        details={"state": state},
    )
