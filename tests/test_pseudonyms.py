"""A pseudonym is the keyed HMAC-SHA256 of "<namespace>:<identifier>", cut to 24 hex
characters behind the namespace's initial, whatever the key (short, long, binary), the
identifier (any Unicode) and the order in which keys and namespaces take turns (the
keyed HMACs are kept and copied). The oracle is the standard library's one-shot HMAC."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.privacy import PSEUDONYM_CHARS, pseudonymize

NAMESPACES = ("patient", "accession", "study", "submission")
# Lone surrogates cannot be encoded as UTF-8 (ingest refuses them before this).
identifiers = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


def oracle(key: bytes, namespace: str, identifier: str) -> str:
    digest = hmac.new(key, f"{namespace}:{identifier}".encode(), hashlib.sha256).hexdigest()
    return f"{namespace[0]}_{digest[:PSEUDONYM_CHARS]}"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=100), st.sampled_from(NAMESPACES), identifiers),
                min_size=1, max_size=30))
def test_pseudonyms_are_the_keyed_hmac(calls: list[tuple[bytes, str, str]]) -> None:
    for key, namespace, identifier in calls:
        assert pseudonymize(key, namespace, identifier) == oracle(  # type: ignore[arg-type]
            key, namespace, identifier)


def test_keys_and_namespaces_keep_pseudonyms_apart() -> None:
    a = pseudonymize(b"key-a", "patient", "12345")
    assert pseudonymize(b"key-b", "patient", "12345") != a
    assert pseudonymize(b"key-a", "accession", "12345") != a
    assert pseudonymize(b"key-a", "patient", "12345") == a
    assert a == oracle(b"key-a", "patient", "12345")
