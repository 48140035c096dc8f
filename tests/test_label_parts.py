"""`extract_labels` reads a report part by part (addenda, impression, body: the order in
which they decide) and stops at the first part that decides each finding the whole text
names. The oracle is the full reading,
which the module keeps for `explain_label`: every clause of every readable section, the
deciding part chosen from all mentions (`_deciding`), and a finding the whole text does
not name is absent. The two must give the same label for every text: the label corpora,
simulated full reports, and generated texts built from the vocabulary's own phrases
(headings, template lines, triggers, terminators, terms and the phrases excluded from a
finding), glued with odd spacing, line breaks and punctuation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from surveillance.clinical.label_evaluation import read_gold
from surveillance.clinical.label_vocabulary import DEFAULT_VOCABULARY
from surveillance.clinical.labels import (
    default_vocabulary,
    explain_label,
    extract_labels,
    load_vocabulary,
)
from surveillance.contracts import Label
from surveillance.simulate.reports import render_report_text

VOCAB = default_vocabulary()
CODES = list(VOCAB.findings)
DATA = Path(__file__).resolve().parent / "data"
STUDIES = {
    "head_ct": ("intracranial_hemorrhage", "large_vessel_occlusion"),
    "chest_xr": ("pneumothorax",),
    "fundus": ("mtm_diabetic_retinopathy",),
    "cta_chest": ("pulmonary_embolism", "aortic_dissection"),
}


def full_reading(text: str) -> dict[str, Label]:
    lowered = text.lower()
    return {code: explain_label(text, code, VOCAB).label
            if VOCAB.findings[code].search(lowered) is not None else Label.ABSENT
            for code in CODES}


def test_the_label_corpora_read_alike() -> None:
    texts = [r.text for name in ("labels_dev.tsv", "labels_heldout.tsv")
             for r in read_gold(DATA / name)]
    assert len(texts) > 400
    for text in texts:
        assert extract_labels(text, CODES, VOCAB) == full_reading(text), text


def test_simulated_full_reports_read_alike() -> None:
    rng = np.random.default_rng(11)
    labels = list(Label)
    seen: set[Label] = set()
    for i in range(400):
        study = list(STUDIES)[i % len(STUDIES)]
        stated = {c: labels[int(rng.integers(3))] for c in STUDIES[study]}
        text = render_report_text(rng, study, stated)
        got = extract_labels(text, CODES, VOCAB)
        assert got == full_reading(text), text
        seen |= set(got.values())
    assert seen == set(Label)  # the reports do state all three


def _phrases() -> list[str]:
    raw = yaml.safe_load(DEFAULT_VOCABULARY.read_text())
    out: list[str] = []
    for key, values in raw["triggers"].items():
        if not key.endswith("_patterns"):
            out += values
    for values in raw["structured_values"].values():
        out += values
    for finding in raw["findings"].values():
        out += finding.get("terms", []) + finding.get("not_this_finding", [])
    return [*out, "left", "right", "m1 segment", "occlusion of the", "ica", "mca",
            "moderate npdr", "etdrs level 53", "small", "and there is", "seen",
            "favored to represent", "over", "the", "is", "hyperdense", "sign"]


PHRASES = _phrases()
HEADINGS = ["IMPRESSION:", "FINDINGS:", "ADDENDUM:", "ADDENDUM 2:", "HISTORY:",
            "INDICATION:", "CONCLUSION:", "CORRECTION:", "REPORT:", "Impression:"]
GLUE = [" ", "  ", ", ", "; ", "\n", ": ", "-", "/", "\t", " \n "]
ENDS = [". ", ".\n", "! ", "? ", "\n\n", " "]
word = st.one_of(st.sampled_from(PHRASES), st.sampled_from(PHRASES).map(str.upper),
                 st.sampled_from(PHRASES).map(str.title))
sentence = st.lists(st.tuples(word, st.sampled_from(GLUE)), min_size=1, max_size=6).map(
    lambda parts: "".join(w + g for w, g in parts).rstrip())
section = st.tuples(st.one_of(st.just(""), st.sampled_from(HEADINGS)),
                    st.lists(st.tuples(sentence, st.sampled_from(ENDS)), min_size=1,
                             max_size=4)).map(
    lambda hs: (hs[0] + " " if hs[0] else "") + "".join(t + e for t, e in hs[1]))
text = st.lists(section, min_size=1, max_size=6).map(lambda parts: "\n".join(parts))


@settings(max_examples=800, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(text)
def test_generated_texts_read_alike(text: str) -> None:
    got = extract_labels(text, CODES, VOCAB)
    assert got == full_reading(text), text
    for label in set(got.values()):
        event(label.value)
    event(f"{text.count('ADDENDUM')} addenda")


def test_a_finding_the_text_does_not_name_stays_absent(tmp_path: Path) -> None:
    """Masking an excluded phrase to spaces joins "big" and "bleed" into the term "big
    bleed", which the text does not hold: the clause (read for the other finding it
    names) has a mention, the label is absent."""
    raw = yaml.safe_load(DEFAULT_VOCABULARY.read_text())
    raw["findings"] = {"bleed": {"terms": ["big bleed"], "not_this_finding": ["old scar"]},
                       "clot": {"terms": ["clot"]}}
    path = tmp_path / "findings.yaml"
    path.write_text(yaml.safe_dump(raw))
    vocab = load_vocabulary(path)
    text = "IMPRESSION: Big old scar bleed with clot."
    assert explain_label(text, "bleed", vocab).label is Label.PRESENT  # the clause reading
    assert extract_labels(text, ["bleed", "clot"], vocab) == {
        "bleed": Label.ABSENT, "clot": Label.PRESENT}
    assert extract_labels("IMPRESSION: Big bleed with clot.", ["bleed"], vocab) == {
        "bleed": Label.PRESENT}
