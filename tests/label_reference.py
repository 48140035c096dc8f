"""Report-label extraction as main 7474894 had it, kept only as the oracle of
`tests/test_label_speed_equivalence.py`: the sentence and heading expressions, the
vocabulary's whole-word expressions (`BEFORE` in front of every phrase set) and the
reading of `extract_labels`, copied unchanged apart from names and the vocabulary they
are compiled into (`old_vocabulary`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple
from unittest import mock

from surveillance.clinical import label_vocabulary
from surveillance.clinical.label_vocabulary import (
    AFTER,
    BEFORE,
    Answer,
    Role,
    SectionKind,
    Side,
    Vocabulary,
    _Sections,
    _trie,
    normal,
)
from surveillance.clinical.labels import Mention, MentionState
from surveillance.contracts import Label

# Sentence ends, blank lines, and line breaks before a heading or template line ("Name:").
# Other line breaks are not breaks: interfaces wrap report lines at a fixed width.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n[ \t]*\n|\n(?=[ \t]*[A-Za-z][A-Za-z /()-]*:)")

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


class _Trigger(NamedTuple):
    start: int
    end: int
    role: Role
    side: Side
    text: str

    def applies_to(self, start: int, end: int) -> bool:
        """Whether this trigger's direction reaches a mention spanning [start, end)."""
        before = self.end <= start
        after = self.start >= end
        if self.side is Side.BEFORE:
            return before
        if self.side is Side.AFTER:
            return after
        return before or after


class _Clause(NamedTuple):
    section: SectionKind
    section_index: int
    #: (section index, sentence number in the section): which clauses share a sentence.
    sentence: tuple[int, int]
    text: str
    #: For a template line: (name, answer text, answer); its clauses are the whole line.
    template: tuple[str, str, Answer] | None = None


def _sections(text: str, vocab: Vocabulary) -> Iterable[tuple[int, SectionKind, str]]:
    if vocab.headings is None:
        yield 0, SectionKind.BODY, text
        return
    kind, start, index = SectionKind.BODY, 0, 0
    for match in vocab.headings.finditer(text):
        yield index, kind, text[start:match.start()]
        kind = vocab.section_kinds[normal(match.group(1))]
        start, index = match.end(), index + 1
    yield index, kind, text[start:]


def _section_clauses(index: int, kind: SectionKind, body: str, vocab: Vocabulary
                     ) -> list[_Clause]:
    out: list[_Clause] = []
    for number, sentence in enumerate(_SENTENCE_BREAK.split(body.lower())):
        if vocab.any_finding.search(sentence) is None:
            continue
        if vocab.template is not None:
            line = vocab.template.match(sentence)
            if line is not None:
                answer = vocab.answers[normal(line.group(2))]
                template = (line.group(1), line.group(2), answer)
                out.append(_Clause(kind, index, (index, number), sentence, template))
        clauses = vocab.terminators.split(sentence)
        if len(clauses) == 1:  # the sentence itself, whose finding was found above
            out.append(_Clause(kind, index, (index, number), sentence))
            continue
        for clause in clauses:
            if clause and vocab.any_finding.search(clause) is not None:
                out.append(_Clause(kind, index, (index, number), clause))
    return out


class _Parts:
    """A report's readable sections in the order they decide (`_deciding`): each addendum
    alone, last first; then every impression section; then every body section. A part's
    clauses are cut when first asked for: a report whose impression decides every finding
    it names never has its body cut into clauses for them."""

    def __init__(self, text: str, vocab: Vocabulary) -> None:
        self.vocab = vocab
        sections = [s for s in _sections(text, vocab) if s[1] is not SectionKind.IGNORED]
        addenda = [[s] for s in sections if s[1] is SectionKind.ADDENDUM]
        self._parts = [*reversed(addenda),
                       [s for s in sections if s[1] is SectionKind.IMPRESSION],
                       [s for s in sections if s[1] is SectionKind.BODY]]
        self._clauses: list[list[_Clause] | None] = [None] * len(self._parts)
        self.triggers_of: dict[int, list[_Trigger]] = {}

    def deciding(self, code: str) -> list[Mention]:
        """The read (not ignored) mentions of `code` in the first part that has any: those
        `_deciding` picks from all of the report's mentions."""
        for i, part in enumerate(self._parts):
            clauses = self._clauses[i]
            if clauses is None:
                clauses = self._clauses[i] = [
                    c for index, kind, body in part
                    for c in _section_clauses(index, kind, body, self.vocab)]
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
            found.append(_Trigger(match.start(), match.end(), role, side, found_text))
    if vocab.trigger_patterns is not None:
        for match in vocab.trigger_patterns.finditer(text):
            found.append(
                _Trigger(match.start(), match.end(), Role.NEGATION, Side.BEFORE, match.group(0))
            )
    return found


def _clause_mentions(
    clause: _Clause, code: str, vocab: Vocabulary, triggers_of: dict[int, list[_Trigger]]
) -> list[Mention]:
    text = _mask(clause.text, vocab.exclusions[code])
    finding = vocab.findings[code]
    if finding.search(text) is None:
        return []
    # Masking keeps positions, so one trigger scan of a clause serves every finding code.
    triggers = triggers_of.get(id(clause))
    if triggers is None:
        triggers = triggers_of[id(clause)] = _triggers(clause.text, vocab)
    out = []
    for mention in finding.finditer(text):
        applying = [t for t in triggers if t.applies_to(mention.start(), mention.end())]
        state, trigger = MentionState.AFFIRMED, None
        for role, role_state in _ROLE_STATE:
            hit = next((t for t in applying if t.role is role), None)
            if hit is not None:
                state, trigger = role_state, hit.text
                break
        out.append(Mention(clause.section, clause.section_index, mention.group(0), state,
                           trigger, clause.text.strip()))
    return out


def _mentions(
    clauses: Sequence[_Clause],
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


def extract_labels(text: str, codes: Iterable[str], vocab: Vocabulary) -> dict[str, Label]:
    lowered = text.lower()
    labels = {code: Label.ABSENT for code in codes}
    named = [code for code in codes if vocab.findings[code].search(lowered) is not None]
    if not named:
        return labels
    # The others are read part by part, and only as far as the part that decides.
    parts = _Parts(text, vocab)
    for code in named:
        deciding = parts.deciding(code)
        if deciding:
            labels[code] = _label(deciding)
    return labels




def _words(phrases: Iterable[str], patterns: Iterable[str] = ()) -> str:
    pieces = [p for p in (_trie(phrases), *patterns) if p]
    return BEFORE + "(?:" + "|".join(pieces) + ")" + AFTER


def _headings(sections: _Sections) -> tuple[re.Pattern[str] | None, dict[str, SectionKind]]:
    kinds: dict[str, SectionKind] = {}
    for names, kind in ((sections.ignore, SectionKind.IGNORED), (sections.body, SectionKind.BODY),
                        (sections.impression, SectionKind.IMPRESSION),
                        (sections.addendum, SectionKind.ADDENDUM)):
        for name in names:
            kinds[normal(name)] = kind
    if not kinds:
        return None, kinds
    alternatives = _trie(kinds)
    pattern = rf"(?:^|\n|(?<=[.!?])[ \t]+)[ \t]*({alternatives})(?:[ \t]+\d+)?[ \t]*:"
    return re.compile(pattern, re.IGNORECASE), kinds


def old_vocabulary() -> Vocabulary:
    """The shipped vocabulary compiled with main's expressions."""
    with mock.patch.object(label_vocabulary, "_words", _words), \
            mock.patch.object(label_vocabulary, "_headings", _headings):
        return label_vocabulary.load_vocabulary()
