"""A report cut into what the labeller reads: sections, sentences and clauses.

1. Sections. The text is cut at the headings the vocabulary lists (``IMPRESSION:``,
   ``ADDENDUM:``, ``INDICATION:``...; at the start of the text, of a line or of a sentence).
   Text before any heading, and ``FINDINGS:``, is body. Which sections are read, and in
   which order they decide, is `clinical.labels`'.
2. Sentences and clauses. A section is split into sentences (``.``, ``!`` or ``?`` before
   white space, blank lines, line breaks before a ``Heading:``; other line breaks only wrap)
   and each sentence into clauses at the terminators (``;``, "but", "however", ", and there
   is", a comma before a size word...): a trigger's scope is its clause. A sentence
   ``<name>: <answer>`` is also kept whole as a template line.

Only clauses that mention some finding are kept. The text is only read: never logged,
stored or put in an error message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from surveillance.clinical.label_vocabulary import Answer, SectionKind, Vocabulary, normal

# Sentence ends, blank lines, and line breaks before a heading or template line ("Name:"),
# led by the blank (the engine jumps between blanks). Other line breaks only wrap lines.
_SENTENCE_BREAK = re.compile(
    r"\s(?:(?<=[.!?]\s)\s*|(?<=\n)[ \t]*\n|(?<=\n)(?=[ \t]*[A-Za-z][A-Za-z /()-]*:))")


class Clause(NamedTuple):
    section: SectionKind
    section_index: int
    #: (section index, sentence number in the section): which clauses share a sentence.
    sentence: tuple[int, int]
    text: str
    #: For a template line: (name, answer text, answer); its clauses are the whole line.
    template: tuple[str, str, Answer] | None = None


def sections(text: str, vocab: Vocabulary) -> Iterable[tuple[int, SectionKind, str]]:
    if vocab.headings is None:
        yield 0, SectionKind.BODY, text
        return
    padded = "\n" + text  # the start of the text as a line's (`Vocabulary.headings`)
    kind, start, index = SectionKind.BODY, 1, 0
    for match in vocab.headings.finditer(padded):
        yield index, kind, padded[start:match.start()]
        name = match.group(1)  # as listed but for case: its key (`normal` for the others)
        kind = vocab.section_kinds.get(name.lower()) or vocab.section_kinds[normal(name)]
        start, index = match.end(), index + 1
    yield index, kind, padded[start:]


def clauses(text: str, vocab: Vocabulary) -> list[Clause]:
    """The clauses of the readable sections that mention any finding at all."""
    return [clause for index, kind, body in sections(text, vocab)
            if kind is not SectionKind.IGNORED
            for clause in section_clauses(index, kind, body, vocab)]


def section_clauses(index: int, kind: SectionKind, body: str, vocab: Vocabulary
                    ) -> list[Clause]:
    out: list[Clause] = []
    for number, sentence in enumerate(_SENTENCE_BREAK.split(body.lower())):
        if vocab.any_finding.search(sentence) is None:
            continue
        if vocab.template is not None:
            line = vocab.template.match(sentence)
            if line is not None:
                answer = vocab.answers[normal(line.group(2))]
                template = (line.group(1), line.group(2), answer)
                out.append(Clause(kind, index, (index, number), sentence, template))
        pieces = vocab.terminators.split(sentence)
        if len(pieces) == 1:  # the sentence itself, whose finding was found above
            out.append(Clause(kind, index, (index, number), sentence))
            continue
        for clause in pieces:
            if clause and vocab.any_finding.search(clause) is not None:
                out.append(Clause(kind, index, (index, number), clause))
    return out
