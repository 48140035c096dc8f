"""Label values of the service's metrics: the fixed sets (enums) and the bounded identifier
labels (tool, version, site, modality), mapped to `other` beyond their bounds.

See `observe/metrics.py` for the conventions; this module holds the label side of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from surveillance.errors import SurveillanceError
from surveillance.stream import topics


class MetricLabelError(SurveillanceError, ValueError):
    """A label value is not an identifier or not in its fixed set; fix the caller."""


class MetricValueError(SurveillanceError, ValueError):
    """Related metric values are inconsistent (e.g. an estimate outside its interval)."""


class Topic(StrEnum):
    """The service's topics as a label's fixed set (`stream.topics` names them)."""

    AI_RESULTS = topics.AI_RESULTS
    REPORTS_FINAL = topics.REPORTS_FINAL
    ADVERSE_EVENTS = topics.ADVERSE_EVENTS
    CASES_JOIN = topics.CASES_JOIN
    CASES_ADJUDICATED = topics.CASES_ADJUDICATED
    ALERTS = topics.ALERTS
    SNAPSHOTS = topics.SNAPSHOTS


class DlqReason(StrEnum):
    """Why an input event went to `<topic>.dlq`."""

    OVERSIZE = "oversize"
    ENCODING = "encoding"
    INVALID_JSON = "invalid_json"
    SCHEMA = "schema"
    INTERNAL = "internal"
    HEADER = "header"  # a `cases.adjudicated` record with forged or unreadable source headers
    HORIZON = "horizon"  # a revision of a possibly evicted case, no store to resolve it


class StateRebuild(StrEnum):
    """How a tool's monitoring state was rebuilt when a worker was given its partition."""

    SNAPSHOT = "snapshot"  # its snapshot loaded as written
    REWOUND = "rewound"  # the case table put back to its snapshot after a crash, then loaded
    REPLAYED = "replayed"  # from its case records: alerts may differ from one uninterrupted run


class DicomOutcome(StrEnum):
    """What the DICOM receiver (C-STORE SCP, STOW-RS) did with one object."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


class AgreementMetric(StrEnum):
    SENSITIVITY = "sensitivity"
    SPECIFICITY = "specificity"
    PPV = "ppv"
    NPV = "npv"
    PREVALENCE = "prevalence"
    KAPPA = "kappa"
    ACCURACY = "accuracy"


class Window(StrEnum):
    """Rolling windows over which agreement and shadow concordance are published."""

    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"
    QUARTER = "90d"
    YEAR = "365d"
    ALL = "all"


class DriftDetector(StrEnum):
    ADWIN = "adwin"
    PAGE_HINKLEY = "page_hinkley"
    KSWIN = "kswin"
    PSI = "psi"
    JENSEN_SHANNON = "jensen_shannon"
    CHI_SQUARE = "chi_square"


class DriftFeature(StrEnum):
    """Monitored features; `score`, `positive_rate` and `embedding` describe the output."""

    SCORE = "score"
    POSITIVE_RATE = "positive_rate"
    EMBEDDING = "embedding"
    KVP = "kvp"
    SLICE_THICKNESS = "slice_thickness"
    PIXEL_SPACING = "pixel_spacing"
    AGE = "age"
    SEX = "sex"
    SCANNER = "scanner"
    PROTOCOL = "protocol"
    SITE = "site"


#: Features whose drift is output drift (the alert rules split on this set too).
OUTPUT_FEATURES = frozenset(
    {DriftFeature.SCORE, DriftFeature.POSITIVE_RATE, DriftFeature.EMBEDDING}
)


class VersionState(StrEnum):
    SHADOW = "shadow"
    VALIDATING = "validating"
    LIVE = "live"
    SUSPENDED = "suspended"
    RETIRED = "retired"


#: Label names any metric may use. Everything else (patient, accession, text) is forbidden.
ALLOWED_LABELS = frozenset(
    {
        "tool",
        "version",
        "site",
        "modality",
        "metric",
        "window",
        "feature",
        "detector",
        "topic",
        "reason",
        "seriousness",
        "status",
        "state",
        "outcome",
        # TimescaleDB background jobs: the policies `db migrate` sets up (about eight).
        "job",
    }
)

# Tool ids, versions, sites and modalities: short identifiers, never sentences.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._:+-]+")
#: The label of every tool, version, site or modality outside its bounded set.
OTHER = "other"
#: The site label of figures over all sites (`clinical.monitor.ALL_SITES`): always kept.
ALL_SITES = "all"


def identifier(kind: str, value: str) -> str:
    """Return `value` if it can be an identifier label (`kind` names it in the error)."""
    if not _IDENTIFIER.fullmatch(value):
        raise MetricLabelError(
            f"{kind} label {value[:40]!r} is not an identifier (letters, digits, '._:+-', "
            "at most 64 characters); pass the tool/version/site id, never free text"
        )
    return value


def label_safe(value: str) -> str:
    """`value` as an identifier label: runs of other characters become one `_`, leading
    punctuation is dropped, 64 characters at most; `other` when nothing is left."""
    safe = _UNSAFE.sub("_", value.strip()).lstrip("._:+-")[:64]
    return safe if _IDENTIFIER.fullmatch(safe) else OTHER


class _Bounds:
    """Which identifier values get their own series (see the module docstring)."""

    def __init__(self) -> None:
        self.tools: set[str] = set()
        self.modalities: set[str] = set()
        self.sites: set[str] = set()
        self.sites_fixed = False
        self.max_sites = 32
        self.max_versions = 16
        self.versions: dict[str, set[str]] = {}

    def tool(self, tool: str) -> str:
        return tool if tool in self.tools else OTHER

    def version(self, tool: str, version: str) -> str:
        if tool not in self.tools:
            return OTHER
        return _admit(self.versions.setdefault(tool, set()), label_safe(version),
                      self.max_versions)

    def site(self, site: str) -> str:
        safe = label_safe(site)
        if safe == ALL_SITES:
            return safe
        if self.sites_fixed:
            return safe if safe in self.sites else OTHER
        return _admit(self.sites, safe, self.max_sites)

    def modality(self, modality: str) -> str:
        return modality if modality in self.modalities else OTHER


def _admit(known: set[str], value: str, limit: int) -> str:
    if value in known:
        return value
    if value == OTHER or len(known) >= limit:
        return OTHER
    known.add(value)
    return value


_bounds = _Bounds()


def bound_labels(sites: list[str], max_sites: int, max_versions_per_tool: int) -> None:
    """Set the site and version bounds (settings `metrics`), before anything is counted."""
    _bounds.sites = {identifier("site", s) for s in sites}
    _bounds.sites_fixed = bool(sites)
    _bounds.max_sites = max_sites
    _bounds.max_versions = max_versions_per_tool


def admit_tools(tools: Iterable[str]) -> None:
    """Give these tools their own series without publishing them (a process that counts
    for some tools only, e.g. the shadow re-scorer)."""
    _bounds.tools.update(identifier("tool", t) for t in tools)


def _ids(tool: str, version: str, site: str) -> tuple[str, str, str]:
    return _bounds.tool(tool), _bounds.version(tool, version), _bounds.site(site)
