"""Report labels from free text: is each finding present, absent or indeterminate?

A NegEx-style reader, configured by `findings.yaml` (terms per finding code, and the
context triggers shared by all findings). The text is split into sentences (at ``.``, ``!``
or ``?`` followed by white space, at blank lines, and at line breaks before a section
heading such as ``IMPRESSION:``; other line breaks are only wrapping) and each sentence
into clauses at the terminators (``;``, "but", "however", ...). Every mention of the
finding is then, within its clause:

- ignored when an `ignore_before` phrase precedes it (an indication such as "rule out
  pneumothorax" asks a question, it states no finding);
- uncertain when an uncertainty trigger applies ("cannot exclude ...", "possible ...",
  "... cannot be excluded", "suspicious for ...", "... versus ...");
- else negated when a negation trigger applies ("no ...", "negative for ...",
  "... has resolved");
- else affirmed.

Uncertainty is checked before negation because uncertainty phrases contain negation words
("cannot be excluded", "not ruled out"). "probable" and "likely" are NOT uncertainty
triggers: they state the reader's diagnosis, which is acted upon.

The report's label: PRESENT if any mention is affirmed (a finding stated anywhere is in the
report, whatever other sentences deny: "No hemorrhage on the left. Right subdural
hematoma."); else INDETERMINATE if any mention is uncertain; else ABSENT (every mention
negated, or the finding not mentioned: reports of these exams state pertinent negatives, so
silence means absent).

Known limitation: a trigger's scope is its whole clause, so a comma-joined sentence such as
"no fracture, and a small pneumothorax" reads the pneumothorax as negated; reports that
join unrelated statements this way need a terminator.

The text is only read: never logged, stored or put in an error message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from surveillance.contracts import Label
from surveillance.errors import SurveillanceError

DEFAULT_VOCABULARY = Path(__file__).with_name("findings.yaml")

#: A word character or a hyphen may not touch a matched phrase on either side.
_BEFORE = r"(?<![\w-])"
_AFTER = r"(?![\w-])"
# Sentence ends, blank lines, and line breaks before a section heading ("IMPRESSION:").
# Other line breaks are not breaks: interfaces wrap report lines at a fixed width.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n[ \t]*\n|\n(?=[ \t]*[A-Z][A-Za-z /]*:)")


class LabelConfigError(SurveillanceError):
    """The finding vocabulary is missing or invalid, or has no entry for a finding code."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Phrases = list[Annotated[str, Field(min_length=1)]]


class _Triggers(_Strict):
    negation_before: Phrases
    negation_after: Phrases
    negation_either: Phrases = []
    uncertainty_before: Phrases
    uncertainty_after: Phrases
    uncertainty_either: Phrases = []
    ignore_before: Phrases = []
    pseudo: Phrases = []
    terminators: Phrases


class _Finding(_Strict):
    terms: Phrases = []
    patterns: Phrases = []
    not_this_finding: Phrases = []


class _VocabularyFile(_Strict):
    triggers: _Triggers
    findings: dict[str, _Finding]


class _Role(Enum):
    NEGATION = "negation"
    UNCERTAINTY = "uncertainty"
    IGNORE = "ignore"
    PSEUDO = "pseudo"


class _Side(Enum):
    BEFORE = "before"
    AFTER = "after"
    EITHER = "either"


class _Mention(Enum):
    AFFIRMED = "affirmed"
    UNCERTAIN = "uncertain"
    NEGATED = "negated"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class _Trigger:
    start: int
    end: int
    role: _Role
    side: _Side

    def applies_to(self, start: int, end: int) -> bool:
        """Whether this trigger's direction reaches a mention spanning [start, end)."""
        before = self.end <= start
        after = self.start >= end
        if self.side is _Side.BEFORE:
            return before
        if self.side is _Side.AFTER:
            return after
        return before or after


@dataclass(frozen=True)
class Vocabulary:
    """Compiled matching rules: triggers, clause terminators and per-finding terms."""

    triggers: re.Pattern[str]
    roles: dict[str, tuple[_Role, _Side]]
    terminators: re.Pattern[str]
    findings: dict[str, re.Pattern[str]]
    exclusions: dict[str, re.Pattern[str] | None]


def _phrase(text: str) -> str:
    words = text.lower().split()
    return r"\s+".join(re.escape(w) for w in words)


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _alternation(pieces: Iterable[str]) -> str:
    # Longest first, so at one position "no evidence of" wins over "no".
    return "|".join(sorted(set(pieces), key=lambda p: (-len(p), p)))


def _compile(raw: _VocabularyFile, path: Path) -> Vocabulary:
    t = raw.triggers
    groups: list[tuple[Phrases, _Role, _Side]] = [
        (t.negation_before, _Role.NEGATION, _Side.BEFORE),
        (t.negation_after, _Role.NEGATION, _Side.AFTER),
        (t.negation_either, _Role.NEGATION, _Side.EITHER),
        (t.uncertainty_before, _Role.UNCERTAINTY, _Side.BEFORE),
        (t.uncertainty_after, _Role.UNCERTAINTY, _Side.AFTER),
        (t.uncertainty_either, _Role.UNCERTAINTY, _Side.EITHER),
        (t.ignore_before, _Role.IGNORE, _Side.BEFORE),
        (t.pseudo, _Role.PSEUDO, _Side.EITHER),
    ]
    roles: dict[str, tuple[_Role, _Side]] = {}
    for phrases, role, side in groups:
        for phrase in phrases:
            key = _normal(phrase)
            if key in roles:
                raise LabelConfigError(
                    f"finding vocabulary {path}: trigger {phrase!r} is listed twice; keep one"
                )
            roles[key] = (role, side)
    triggers = re.compile(_BEFORE + "(?:" + _alternation(_phrase(p) for p in roles) + ")" + _AFTER)
    words = [_phrase(p) for p in t.terminators if re.search(r"\w", p)]
    marks = [re.escape(p) for p in t.terminators if not re.search(r"\w", p)]
    split_on = [*marks]
    if words:
        split_on.append(_BEFORE + "(?:" + _alternation(words) + ")" + _AFTER)
    terminators = re.compile("|".join(split_on))
    findings: dict[str, re.Pattern[str]] = {}
    exclusions: dict[str, re.Pattern[str] | None] = {}
    for code, finding in raw.findings.items():
        pieces = [_phrase(term) for term in finding.terms] + list(finding.patterns)
        if not pieces:
            raise LabelConfigError(
                f"finding vocabulary {path}: finding {code!r} has no terms or patterns"
            )
        try:
            findings[code] = re.compile(_BEFORE + "(?:" + _alternation(pieces) + ")" + _AFTER)
        except re.error as exc:
            raise LabelConfigError(
                f"finding vocabulary {path}: finding {code!r} has an invalid pattern: {exc}"
            ) from exc
        excluded = [_phrase(p) for p in finding.not_this_finding]
        exclusions[code] = (
            re.compile(_BEFORE + "(?:" + _alternation(excluded) + ")" + _AFTER)
            if excluded else None
        )
    return Vocabulary(triggers, roles, terminators, findings, exclusions)


def load_vocabulary(path: Path | None = None) -> Vocabulary:
    """Read, validate and compile a vocabulary file (default: findings.yaml beside this module)."""
    path = path or DEFAULT_VOCABULARY
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise LabelConfigError(f"cannot read finding vocabulary {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise LabelConfigError(f"finding vocabulary {path} is not valid YAML: {exc}") from exc
    try:
        parsed = _VocabularyFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise LabelConfigError(f"finding vocabulary {path}: field {where}: {first['msg']}") from exc
    return _compile(parsed, path)


@lru_cache(maxsize=1)
def _default_vocabulary() -> Vocabulary:
    return load_vocabulary()


def _mask(text: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return text
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _clause_mentions(clause: str, code: str, vocab: Vocabulary) -> Iterable[_Mention]:
    text = _mask(clause, vocab.exclusions[code])
    if vocab.findings[code].search(text) is None:
        return  # no mention here: its triggers cannot matter (most clauses, most codes)
    triggers = []
    for match in vocab.triggers.finditer(text):
        role, side = vocab.roles[_normal(match.group(0))]
        if role is not _Role.PSEUDO:
            triggers.append(_Trigger(match.start(), match.end(), role, side))
    for mention in vocab.findings[code].finditer(text):
        applying = {t.role for t in triggers if t.applies_to(mention.start(), mention.end())}
        if _Role.IGNORE in applying:
            yield _Mention.IGNORED
        elif _Role.UNCERTAINTY in applying:
            yield _Mention.UNCERTAIN
        elif _Role.NEGATION in applying:
            yield _Mention.NEGATED
        else:
            yield _Mention.AFFIRMED


def extract_label(text: str, finding_code: str, vocabulary: Vocabulary | None = None) -> Label:
    """The report's label for one finding; see the module docstring for the rules."""
    return extract_labels(text, (finding_code,), vocabulary)[finding_code]


def extract_labels(
    text: str, finding_codes: Iterable[str], vocabulary: Vocabulary | None = None
) -> dict[str, Label]:
    """The report's label for each finding code."""
    vocab = vocabulary or _default_vocabulary()
    codes = list(finding_codes)
    for code in codes:
        if code not in vocab.findings:
            raise LabelConfigError(
                f"no vocabulary for finding code {code!r}; add it under 'findings:' in "
                f"{DEFAULT_VOCABULARY.name}"
            )
    clauses = [
        clause
        for sentence in _SENTENCE_BREAK.split(text)
        for clause in vocab.terminators.split(sentence.lower())
    ]
    labels: dict[str, Label] = {}
    for code in codes:
        seen = {m for clause in clauses for m in _clause_mentions(clause, code, vocab)}
        if _Mention.AFFIRMED in seen:
            labels[code] = Label.PRESENT
        elif _Mention.UNCERTAIN in seen:
            labels[code] = Label.INDETERMINATE
        else:
            labels[code] = Label.ABSENT
    return labels
