"""The faster expressions of report-label extraction decide every label as main's did.

The speed-ups rewrite regular expressions (a phrase set's word-start check after its first
character, the heading and sentence-break expressions led by their blank) and the reading
(a clause scanned once per finding, its triggers' roles ranked in one pass) and must change
no match and no label. The oracle is main 7474894's code, kept in `tests/label_reference.py`
only: its expressions compiled into the same vocabulary, and its `extract_labels`. Compared
on the label corpora (real-world styles: negations, addenda, templates, abbreviations such
as PE), on simulated full reports, and on hypothesis-generated texts: the vocabulary's own
phrases and headings glued with odd spacing, hyphens, line breaks, punctuation and
characters whose lower case is longer (U+0130) or that are word characters only in Unicode.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveillance.clinical import report_clauses
from surveillance.clinical.label_evaluation import read_gold
from surveillance.clinical.label_vocabulary import DEFAULT_VOCABULARY, Vocabulary, load_vocabulary
from surveillance.clinical.labels import default_vocabulary, extract_labels
from surveillance.contracts import Label
from surveillance.simulate.reports import render_report_text
from tests import label_reference as reference
from tests.test_label_parts import HEADINGS, PHRASES, STUDIES
from tests.test_label_parts import text as report_text

NEW = default_vocabulary()
OLD = reference.old_vocabulary()
CODES = list(NEW.findings)
DATA = Path(__file__).resolve().parent / "data"

#: Characters around and between phrases: word characters touching a phrase, hyphens,
#: blanks of all kinds, sentence ends, colons, and Unicode letters and digits.
ODD = "aZ_-1 \t\n\r\x0b\x0c\u00a0\u2028.!?:;,/()İé٣ſK"
piece = st.one_of(st.sampled_from(PHRASES), st.sampled_from(PHRASES).map(str.upper),
                  st.sampled_from(HEADINGS), st.text(alphabet=ODD, max_size=3))
odd_text = st.lists(piece, max_size=14).map("".join)


def spans(pattern: re.Pattern[str] | None, text: str) -> list[tuple[int, int, str]]:
    assert pattern is not None
    return [(m.start(), m.end(), m.group(0)) for m in pattern.finditer(text)]


def word_expressions(vocab: Vocabulary) -> list[re.Pattern[str] | None]:
    return [vocab.triggers, vocab.terminators, vocab.any_finding, *vocab.findings.values(),
            *vocab.exclusions.values()]


def test_the_expressions_were_rewritten() -> None:
    """Else the comparisons below would compare a thing with itself."""
    assert NEW.findings["pneumothorax"].pattern != OLD.findings["pneumothorax"].pattern
    assert NEW.headings is not None and OLD.headings is not None
    assert NEW.headings.pattern != OLD.headings.pattern
    assert report_clauses._SENTENCE_BREAK.pattern != reference._SENTENCE_BREAK.pattern


@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(odd_text, report_text))
def test_every_expression_matches_the_same_spans(text: str) -> None:
    for lowered in (text, text.lower()):
        for new, old in zip(word_expressions(NEW), word_expressions(OLD), strict=True):
            if new is None or old is None:
                assert new is old
                continue
            assert spans(new, lowered) == spans(old, lowered), (new.pattern, lowered)
        assert (report_clauses._SENTENCE_BREAK.split(lowered)
                == reference._SENTENCE_BREAK.split(lowered)), lowered
    assert list(report_clauses.sections(text, NEW)) == list(reference._sections(text, OLD)), text


@settings(max_examples=800, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(report_text, odd_text))
def test_generated_texts_get_the_same_labels(text: str) -> None:
    assert extract_labels(text, CODES, NEW) == reference.extract_labels(text, CODES, OLD), text


def test_the_label_corpora_get_the_same_labels() -> None:
    texts = [r.text for name in ("labels_dev.tsv", "labels_heldout.tsv")
             for r in read_gold(DATA / name)]
    assert len(texts) > 400
    for text in texts:
        assert extract_labels(text, CODES, NEW) == reference.extract_labels(text, CODES, OLD)


def test_simulated_full_reports_get_the_same_labels() -> None:
    rng = np.random.default_rng(23)
    every = list(Label)
    seen: set[Label] = set()
    for i in range(600):
        study = list(STUDIES)[i % len(STUDIES)]
        stated = {c: every[int(rng.integers(3))] for c in STUDIES[study]}
        text = render_report_text(rng, study, stated)
        got = extract_labels(text, CODES, NEW)
        assert got == reference.extract_labels(text, CODES, OLD), text
        seen |= set(got.values())
    assert seen == set(Label)


def _overlapping_vocabulary() -> Vocabulary:
    """Findings whose phrases run over each other's starts (a longer phrase of one code
    covers where another's begins), with patterns and first characters alike."""
    raw = yaml.safe_load(DEFAULT_VOCABULARY.read_text())
    raw["findings"] = {
        "long": {"terms": ["large vessel occlusion", "dense mca"]},
        "short": {"terms": ["vessel occlusion", "mca sign", "occlusion"]},
        "pattern": {"terms": ["clot"], "patterns": [r"vessel\s+occ\w*", r"(?:hyper)?dense"]},
        "hyphen": {"terms": ["non-occlusive", "occlusive"]},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "findings.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load_vocabulary(path)


OVERLAPPING = _overlapping_vocabulary()
overlapping_text = st.lists(st.one_of(
    st.sampled_from(["large", "vessel", "occlusion", "dense", "hyperdense", "mca", "sign",
                     "clot", "non", "occlusive", "occluded", "large vessel occlusion"]),
    st.text(alphabet=" -_.\nx", max_size=2)), max_size=12).map(" ".join)


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(overlapping_text, odd_text))
def test_named_codes_are_those_whose_expression_matches(text: str) -> None:
    """`Vocabulary.named` (one scan, codes tried at its spans' word starts) against its
    definition, a search per code, on the shipped vocabulary and on one whose phrases
    overlap across codes."""
    lowered = text.lower()
    for vocab in (NEW, OVERLAPPING):
        codes = list(vocab.findings)
        assert vocab.named(lowered, codes) == [
            c for c in codes if vocab.findings[c].search(lowered) is not None], lowered
