"""The finding vocabulary of report-label extraction: read, validated and compiled once.

The file (default `findings.yaml` beside this module; its header documents every key)
holds the context triggers shared by all findings, the clause terminators, the report
section headings, the answers of structured template lines, and per finding code its terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from surveillance.errors import SurveillanceError

DEFAULT_VOCABULARY = Path(__file__).with_name("findings.yaml")

#: A word character or a hyphen may not touch a matched phrase on either side.
BEFORE = r"(?<![\w-])"
AFTER = r"(?![\w-])"


class LabelConfigError(SurveillanceError):
    """The finding vocabulary is missing or invalid, or has no entry for a finding code."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Phrases = list[Annotated[str, Field(min_length=1)]]


class _Triggers(_Strict):
    negation_before: Phrases
    negation_after: Phrases
    negation_either: Phrases = []
    negation_before_patterns: Phrases = []
    historical_before: Phrases = []
    uncertainty_before: Phrases
    uncertainty_after: Phrases
    uncertainty_either: Phrases = []
    ignore_before: Phrases = []
    pseudo: Phrases = []
    terminators: Phrases
    terminator_patterns: Phrases = []


class _Sections(_Strict):
    ignore: Phrases = []
    body: Phrases = []
    impression: Phrases = []
    addendum: Phrases = []


class _StructuredValues(_Strict):
    present: Phrases = []
    absent: Phrases = []
    indeterminate: Phrases = []


class _Finding(_Strict):
    terms: Phrases = []
    patterns: Phrases = []
    not_this_finding: Phrases = []


class _VocabularyFile(_Strict):
    triggers: _Triggers
    sections: _Sections = _Sections()
    structured_values: _StructuredValues = _StructuredValues()
    findings: dict[str, _Finding]


class Role(Enum):
    NEGATION = "negation"
    HISTORICAL = "historical"
    UNCERTAINTY = "uncertainty"
    IGNORE = "ignore"
    PSEUDO = "pseudo"


class Side(Enum):
    BEFORE = "before"
    AFTER = "after"
    EITHER = "either"


class SectionKind(Enum):
    """What a report section may decide: addenda over the impression over the body."""

    BODY = "body"
    IMPRESSION = "impression"
    ADDENDUM = "addendum"
    IGNORED = "ignored"


class Answer(Enum):
    """The value of a structured template line ("Pneumothorax: None.")."""

    PRESENT = "present"
    ABSENT = "absent"
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class Vocabulary:
    """Compiled matching rules; built by `load_vocabulary`."""

    triggers: re.Pattern[str]
    roles: dict[str, tuple[Role, Side]]
    #: Regular-expression triggers (negation before the mention), matched separately.
    trigger_patterns: re.Pattern[str] | None
    terminators: re.Pattern[str]
    #: A heading ("IMPRESSION:") at the start of a line or of a sentence; the start of the
    #: text counts when a line break is put in front of it.
    headings: re.Pattern[str] | None
    section_kinds: dict[str, SectionKind]
    #: "<name>: <answer>" at the start of a sentence; group 1 the name, 2 the answer.
    template: re.Pattern[str] | None
    answers: dict[str, Answer]
    findings: dict[str, re.Pattern[str]]
    exclusions: dict[str, re.Pattern[str] | None]
    #: Any term of any finding: clauses without one need no trigger matching at all.
    any_finding: re.Pattern[str]
    #: Per finding code, the characters its phrases start with (None: it has patterns).
    first_characters: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def named(self, lowered: str, codes: Iterable[str]) -> list[str]:
        """The codes whose finding expression matches somewhere in `lowered`.

        One scan for any finding, not one per code: a code's match is one of
        `any_finding` there too, so it starts within a span of that scan (at its start, or
        inside it where the scan took a longer phrase: "large vessel occlusion" over
        "vessel occlusion"). Each code is then tried only at those spans' word starts
        that hold one of its first characters."""
        starts: list[int] = []
        for match in self.any_finding.finditer(lowered):
            start, end = match.span()
            starts.append(start)
            if end - start > 1:
                starts += [p for p in (w.start() for w in _WORD_START.finditer(
                    lowered, start + 1, end)) if p < end]
        if not starts:
            return []
        by_first: dict[str, list[int]] = {}
        for p in starts:
            by_first.setdefault(lowered[p], []).append(p)
        named = []
        for code in codes:
            finding, first = self.findings[code], self.first_characters.get(code)
            tried = starts if first is None else [
                p for char in first & by_first.keys() for p in by_first[char]]
            for p in tried:
                if finding.match(lowered, p):
                    named.append(code)
                    break
        return named


#: A position no word character (nor hyphen) comes before: where a phrase may start.
_WORD_START = re.compile(BEFORE)


def normal(text: str) -> str:
    return " ".join(text.lower().split())


_SPACE = " "
#: A trie of characters; the key "" marks the end of a phrase.
_Node = dict[str, "_Node"]


#: A phrase set starting with at most this many distinct characters is matched from its
#: first character (`_words`); with more, nearly every letter starts a phrase and the
#: word-start check in front fails sooner inside words.
_FEW_FIRST = 8


def _trie(phrases: Iterable[str], at_word_start: bool = False) -> str:
    """One regex of literal phrases, merged on common prefixes.

    The regex engine tries a flat alternation's branches one by one at every word start;
    a trie tries one branch per first character, which makes the scans several times
    faster. Longer phrases still win: each optional tail is greedy, and the word-boundary
    check after the trie backtracks into a shorter phrase when a longer one does not end
    at a word boundary.

    `at_word_start`: each phrase must also start a word, checked right after its first
    character (the character before that one is no word character).
    """
    root: _Node = {}
    for text in phrases:
        node = root
        for char in _SPACE.join(text.lower().split()):
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: _Node, first: bool = False) -> str:
        branches = [(r"\s+" if c == _SPACE else re.escape(c))
                    + (rf"(?<![\w-]{re.escape(c)})" if first else "") + emit(child)
                    for c, child in sorted(node.items()) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root, first=at_word_start)


def _words(phrases: Iterable[str], patterns: Iterable[str] = ()) -> str:
    """Literal phrases and regular expressions, as whole words.

    Literal phrases alone that start with few distinct characters have the word-start
    check after their first character (`_trie`'s `at_word_start`): the same matches as
    `BEFORE` in front, but every branch then starts with a literal, so the engine jumps to
    the positions holding a first character instead of trying a match at each position
    (scans of a report 1.4-3x faster)."""
    phrases, patterns = list(phrases), list(patterns)
    firsts = {" ".join(p.lower().split())[:1] for p in phrases}
    if phrases and not patterns and "" not in firsts and len(firsts) <= _FEW_FIRST:
        return _trie(phrases, at_word_start=True) + AFTER
    pieces = [p for p in (_trie(phrases), *patterns) if p]
    return BEFORE + "(?:" + "|".join(pieces) + ")" + AFTER


def _regex(pattern: str, path: Path, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise LabelConfigError(f"finding vocabulary {path}: {what} is invalid: {exc}") from exc


def _roles(t: _Triggers, path: Path) -> dict[str, tuple[Role, Side]]:
    groups: list[tuple[Phrases, Role, Side]] = [
        (t.negation_before, Role.NEGATION, Side.BEFORE),
        (t.negation_after, Role.NEGATION, Side.AFTER),
        (t.negation_either, Role.NEGATION, Side.EITHER),
        (t.historical_before, Role.HISTORICAL, Side.BEFORE),
        (t.uncertainty_before, Role.UNCERTAINTY, Side.BEFORE),
        (t.uncertainty_after, Role.UNCERTAINTY, Side.AFTER),
        (t.uncertainty_either, Role.UNCERTAINTY, Side.EITHER),
        (t.ignore_before, Role.IGNORE, Side.BEFORE),
        (t.pseudo, Role.PSEUDO, Side.EITHER),
    ]
    roles: dict[str, tuple[Role, Side]] = {}
    for phrases, role, side in groups:
        for p in phrases:
            key = normal(p)
            if key in roles:
                raise LabelConfigError(
                    f"finding vocabulary {path}: trigger {p!r} is listed twice; keep one"
                )
            roles[key] = (role, side)
    return roles


def _headings(sections: _Sections) -> tuple[re.Pattern[str] | None, dict[str, SectionKind]]:
    kinds: dict[str, SectionKind] = {}
    for names, kind in ((sections.ignore, SectionKind.IGNORED), (sections.body, SectionKind.BODY),
                        (sections.impression, SectionKind.IMPRESSION),
                        (sections.addendum, SectionKind.ADDENDUM)):
        for name in names:
            kinds[normal(name)] = kind
    if not kinds:
        return None, kinds
    # Only listed names start a section: "Pneumothorax: None." is a template line.
    alternatives = _trie(kinds)
    # After a line break, or blanks after a sentence's end: the one character class in
    # front lets the engine jump between blanks (a heading at the start of the text is
    # found in the text behind a line break: `report_clauses.sections`).
    pattern = (rf"[\n \t](?:(?<=\n)|(?<=[.!?][ \t]))[ \t]*({alternatives})(?:[ \t]+\d+)?"
               r"[ \t]*:")
    return re.compile(pattern, re.IGNORECASE), kinds


def _template(values: _StructuredValues) -> tuple[re.Pattern[str] | None, dict[str, Answer]]:
    answers: dict[str, Answer] = {}
    for phrases, answer in ((values.present, Answer.PRESENT), (values.absent, Answer.ABSENT),
                            (values.indeterminate, Answer.INDETERMINATE)):
        for p in phrases:
            answers[normal(p)] = answer
    if not answers:
        return None, answers
    alternatives = _trie(answers)
    return re.compile(rf"^\s*([^:.;]{{1,80}}?)\s*:\s*({alternatives}){AFTER}"), answers


def _compile(raw: _VocabularyFile, path: Path) -> Vocabulary:
    t = raw.triggers
    roles = _roles(t, path)
    triggers = re.compile(_words(roles))
    trigger_patterns = (
        _regex("|".join(f"(?:{p})" for p in t.negation_before_patterns), path,
               "triggers.negation_before_patterns")
        if t.negation_before_patterns else None
    )
    words = [p for p in t.terminators if re.search(r"\w", p)]
    marks = [re.escape(p) for p in t.terminators if not re.search(r"\w", p)]
    split_on = [*marks, *(f"(?:{p})" for p in t.terminator_patterns)]
    if words:
        split_on.append(_words(words))
    terminators = _regex("|".join(split_on), path, "triggers.terminator_patterns")
    headings, kinds = _headings(raw.sections)
    template, answers = _template(raw.structured_values)
    findings: dict[str, re.Pattern[str]] = {}
    exclusions: dict[str, re.Pattern[str] | None] = {}
    terms: list[str] = []
    patterns: list[str] = []
    first_characters: dict[str, frozenset[str] | None] = {}
    for code, finding in raw.findings.items():
        if not finding.terms and not finding.patterns:
            raise LabelConfigError(
                f"finding vocabulary {path}: finding {code!r} has no terms or patterns"
            )
        findings[code] = _regex(_words(finding.terms, finding.patterns), path,
                                f"a pattern of finding {code!r}")
        first_characters[code] = None if finding.patterns else frozenset(
            " ".join(t.lower().split())[:1] for t in finding.terms)
        terms.extend(finding.terms)
        patterns.extend(finding.patterns)
        exclusions[code] = (
            re.compile(_words(finding.not_this_finding)) if finding.not_this_finding else None
        )
    any_finding = _regex(_words(terms, patterns), path, "the finding patterns")
    return Vocabulary(triggers, roles, trigger_patterns, terminators, headings, kinds, template,
                      answers, findings, exclusions, any_finding, first_characters)


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
