"""Report labels from free text: is each finding present, absent or indeterminate?

A NegEx-style reader configured by `findings.yaml` (terms per finding code; context
triggers, clause terminators, section headings and template answers shared by all).

1. Sections, sentences and clauses (`clinical.report_clauses`): the text is cut at the
   headings the vocabulary lists, each section into sentences and each sentence into
   clauses at the terminators; a trigger's scope is its clause. Indication, history,
   comparison and technique sections are never read: they ask questions or describe other
   studies. Text before any heading, and ``FINDINGS:``, is body.
2. Structured template lines. A sentence ``<name>: <answer>`` whose name mentions the
   finding ("Pneumothorax: None.", "PE: positive") is decided by the answer alone.
3. Mentions. Every other mention of the finding is, within its clause:
   ignored after an `ignore_before` phrase ("rule out PE" asks, it states nothing);
   uncertain under an uncertainty trigger ("cannot exclude", "difficult to exclude",
   "... versus ..."); negated under a negation trigger ("no", "was negative", "rather than",
   "favored to represent X over"); historical after "history of"; else affirmed.
   Uncertainty is checked before negation because its phrases contain negation words
   ("not entirely excluded"). "probable" and "likely" are NOT uncertainty: they state the
   reader's diagnosis, which is acted upon.
4. Decision. The last addendum that mentions the finding decides (an addendum corrects the
   report); else the impression, if it mentions the finding; else the body. Within the
   deciding part: PRESENT if any mention is affirmed ("No hemorrhage on the left. Right
   subdural hematoma."), else INDETERMINATE if any is uncertain, else ABSENT (negated,
   historical, or not mentioned: reports of these exams state pertinent negatives, so
   silence means absent).

A coded result wins over all of this: `report_labels` takes a report's structured findings
(HL7 OBX, FHIR conclusionCode, a template field) first and reads the text only for the
finding codes they do not give.

The text is only read: never logged, stored or put in an error message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Literal, NamedTuple

from surveillance.clinical import report_clauses
from surveillance.clinical.label_vocabulary import (
    DEFAULT_VOCABULARY,
    Answer,
    LabelConfigError,
    Role,
    SectionKind,
    Side,
    Vocabulary,
    load_vocabulary,
    normal,
)
from surveillance.clinical.report_clauses import Clause
from surveillance.contracts import Label, StructuredFinding, wire

__all__ = [
    "Explanation",
    "LabelConfigError",
    "Mention",
    "MentionState",
    "default_vocabulary",
    "explain_label",
    "extract_label",
    "extract_labels",
    "load_vocabulary",
    "report_labels",
]

class MentionState(Enum):
    AFFIRMED = "affirmed"
    UNCERTAIN = "uncertain"
    NEGATED = "negated"
    HISTORICAL = "historical"
    IGNORED = "ignored"


_ANSWER_STATE = {
    Answer.PRESENT: MentionState.AFFIRMED,
    Answer.ABSENT: MentionState.NEGATED,
    Answer.INDETERMINATE: MentionState.UNCERTAIN,
}
_ROLE_STATE = (
    (Role.IGNORE, MentionState.IGNORED),
    (Role.UNCERTAINTY, MentionState.UNCERTAIN),
    (Role.NEGATION, MentionState.NEGATED),
    (Role.HISTORICAL, MentionState.HISTORICAL),
)
_ROLE_RANK = {role: rank for rank, (role, _) in enumerate(_ROLE_STATE)}
_NEGATION_RANK = _ROLE_RANK[Role.NEGATION]


@dataclass(frozen=True, slots=True)
class Mention:
    """One mention of a finding and what decided its state."""

    section: SectionKind
    #: Position of the section in the report (addenda later in the text win).
    section_index: int
    term: str
    state: MentionState
    #: The trigger or template answer that set the state; None when affirmed by default.
    trigger: str | None
    clause: str


@dataclass(frozen=True, slots=True)
class Explanation:
    label: Label
    #: The part of the report that decided (None: the finding is not mentioned).
    decided_by: SectionKind | None
    deciding: tuple[Mention, ...]
    mentions: tuple[Mention, ...]


class _Trigger(NamedTuple):
    start: int
    end: int
    #: The trigger's place in `_ROLE_STATE` (its role's rank; a role without one ranks
    #: last), kept here: an enum member's hash, looked up per trigger and mention, was a
    #: tenth of the labeller's time.
    rank: int
    side: Side
    text: str


@lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    """The shipped vocabulary (`findings.yaml`), compiled once."""
    return load_vocabulary()


class _Parts:
    """A report's readable sections in the order they decide (`_deciding`): each addendum
    alone, last first; then every impression section; then every body section. A part's
    clauses are cut when first asked for: a report whose impression decides every finding
    it names never has its body cut into clauses for them."""

    def __init__(self, text: str, vocab: Vocabulary) -> None:
        self.vocab = vocab
        sections = [s for s in report_clauses.sections(text, vocab)
                    if s[1] is not SectionKind.IGNORED]
        addenda = [[s] for s in sections if s[1] is SectionKind.ADDENDUM]
        self._parts = [*reversed(addenda),
                       [s for s in sections if s[1] is SectionKind.IMPRESSION],
                       [s for s in sections if s[1] is SectionKind.BODY]]
        self._clauses: list[list[Clause] | None] = [None] * len(self._parts)
        self.triggers_of: dict[int, list[_Trigger]] = {}

    def deciding(self, code: str) -> list[Mention]:
        """The read (not ignored) mentions of `code` in the first part that has any: those
        `_deciding` picks from all of the report's mentions."""
        for i, part in enumerate(self._parts):
            clauses = self._clauses[i]
            if clauses is None:
                clauses = self._clauses[i] = [
                    c for index, kind, body in part
                    for c in report_clauses.section_clauses(index, kind, body, self.vocab)]
            read = [m for m in _mentions(clauses, code, self.vocab, self.triggers_of)
                    if m.state is not MentionState.IGNORED]
            if read:
                return read
        return []


def _mask(text: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return text
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _triggers(text: str, vocab: Vocabulary) -> list[_Trigger]:
    found = []
    for match in vocab.triggers.finditer(text):
        found_text = match.group(0)
        role, side = vocab.roles.get(found_text) or vocab.roles[normal(found_text)]
        if role is not Role.PSEUDO:
            found.append(_Trigger(match.start(), match.end(),
                                  _ROLE_RANK.get(role, len(_ROLE_STATE)), side, found_text))
    if vocab.trigger_patterns is not None:
        for match in vocab.trigger_patterns.finditer(text):
            found.append(
                _Trigger(match.start(), match.end(), _NEGATION_RANK, Side.BEFORE,
                         match.group(0))
            )
    return found


def _clause_mentions(
    clause: Clause, code: str, vocab: Vocabulary, triggers_of: dict[int, list[_Trigger]]
) -> list[Mention]:
    text = _mask(clause.text, vocab.exclusions[code])
    if not (found := list(vocab.findings[code].finditer(text))):
        return []
    # Masking keeps positions, so one trigger scan of a clause serves every finding code.
    triggers = triggers_of.get(id(clause))
    if triggers is None:
        triggers = triggers_of[id(clause)] = _triggers(clause.text, vocab)
    out = []
    for mention in found:
        start, end = mention.span()
        # The first role of `_ROLE_STATE` an applying trigger has, its first such trigger.
        hit, rank = None, len(_ROLE_STATE)
        # A trigger reaches the mention in its direction: before it, after it, or either.
        for t in triggers:
            if t.rank < rank and (
                    (t.end <= start or t.start >= end) if t.side is Side.EITHER
                    else t.end <= start if t.side is Side.BEFORE else t.start >= end):
                hit, rank = t, t.rank
        state = MentionState.AFFIRMED if hit is None else _ROLE_STATE[rank][1]
        out.append(Mention(clause.section, clause.section_index, mention.group(0), state,
                           None if hit is None else hit.text, clause.text.strip()))
    return out


def _mentions(
    clauses: Sequence[Clause],
    code: str,
    vocab: Vocabulary,
    triggers_of: dict[int, list[_Trigger]] | None = None,
) -> list[Mention]:
    triggers_of = {} if triggers_of is None else triggers_of
    finding = vocab.findings[code]
    out: list[Mention] = []
    decided: set[tuple[int, int]] = set()
    for clause in clauses:
        if clause.template is not None:
            name, answer_text, answer = clause.template
            name_match = finding.search(_mask(name, vocab.exclusions[code]))
            if name_match is not None:
                decided.add(clause.sentence)
                out.append(Mention(clause.section, clause.section_index, name_match.group(0),
                                   _ANSWER_STATE[answer], answer_text, clause.text.strip()))
        elif clause.sentence not in decided:
            out.extend(_clause_mentions(clause, code, vocab, triggers_of))
    return out


def _deciding(mentions: Sequence[Mention]) -> tuple[list[Mention], SectionKind | None]:
    """The mentions of the part that decides: last addendum, else impression, else body."""
    read = [m for m in mentions if m.state is not MentionState.IGNORED]
    if not read:
        return read, None
    addenda = [m for m in read if m.section is SectionKind.ADDENDUM]
    if addenda:
        last = max(m.section_index for m in addenda)
        return [m for m in addenda if m.section_index == last], SectionKind.ADDENDUM
    impression = [m for m in read if m.section is SectionKind.IMPRESSION]
    if impression:
        return impression, SectionKind.IMPRESSION
    return read, SectionKind.BODY


def _label(deciding: Sequence[Mention]) -> Label:
    states = {m.state for m in deciding}
    if MentionState.AFFIRMED in states:
        return Label.PRESENT
    if MentionState.UNCERTAIN in states:
        return Label.INDETERMINATE
    return Label.ABSENT


_DECISIVE = {Label.PRESENT: MentionState.AFFIRMED, Label.INDETERMINATE: MentionState.UNCERTAIN}


def _decide(mentions: Sequence[Mention]) -> Explanation:
    deciding, part = _deciding(mentions)
    label = _label(deciding)
    wanted = _DECISIVE.get(label)
    shown = tuple(m for m in deciding if wanted is None or m.state is wanted)
    return Explanation(label, part, shown, tuple(mentions))


def _check_codes(codes: Iterable[str], vocab: Vocabulary) -> list[str]:
    out = list(codes)
    for code in out:
        if code not in vocab.findings:
            raise LabelConfigError(
                f"no vocabulary for finding code {code!r}; add it under 'findings:' in "
                f"{DEFAULT_VOCABULARY.name}"
            )
    return out


def explain_label(
    text: str, finding_code: str, vocabulary: Vocabulary | None = None
) -> Explanation:
    """The label for one finding, with every mention and the trigger that set its state."""
    vocab = vocabulary or default_vocabulary()
    _check_codes((finding_code,), vocab)
    return _decide(_mentions(report_clauses.clauses(text, vocab), finding_code, vocab))


def extract_label(text: str, finding_code: str, vocabulary: Vocabulary | None = None) -> Label:
    """The report's label for one finding; see the module docstring for the rules."""
    return extract_labels(text, (finding_code,), vocabulary)[finding_code]


def extract_labels(
    text: str, finding_codes: Iterable[str], vocabulary: Vocabulary | None = None
) -> dict[str, Label]:
    """The report's label for each finding code."""
    vocab = vocabulary or default_vocabulary()
    codes = _check_codes(finding_codes, vocab)
    # Most codes are not named anywhere in a report (a head CT names no embolism): one
    # scan of the whole text settles them.
    lowered = text.lower()
    labels = {code: Label.ABSENT for code in codes}
    named = vocab.named(lowered, codes)
    if not named:
        return labels
    # The others are read part by part, and only as far as the part that decides.
    parts = _Parts(text, vocab)
    for code in named:
        deciding = parts.deciding(code)
        if deciding:
            labels[code] = _label(deciding)
    return labels


def report_labels(
    findings: Sequence[StructuredFinding | wire.StructuredFinding] | None,
    text: str | None,
    finding_codes: Iterable[str],
    vocabulary: Vocabulary | None = None,
) -> tuple[dict[str, Label], Literal["structured", "text"]]:
    """Labels of one report: a coded result (structured finding) wins over the text.

    Codes the structured findings give keep their coded label, whatever the text says;
    the text is read only for the other codes. The source is "structured" when any coded
    label was used. A code neither gives is left out (the join reads it as indeterminate).
    """
    coded = {f.finding_code: f.label for f in findings or ()}
    missing = [c for c in finding_codes if c not in coded]
    from_text = extract_labels(text, missing, vocabulary) if text and missing else {}
    used_codes = findings is not None and (bool(coded) or not from_text)
    source: Literal["structured", "text"] = "structured" if used_codes else "text"
    return {**from_text, **coded}, source
