"""Is the pseudonym key fit for the mode we run in? (`surveillance worker`, `store-writer`,
`intake` and `shadow` ask before they start.)

Pseudonyms are HMACs of identifiers that are easy to enumerate (accession numbers are
sequential): anyone holding the key reverses them by trying every candidate. So
production refuses the public demo key, an empty key, and any key shorter than 32 bytes
or with less than 128 bits of estimated entropy (a repeated or word-like key). The
estimate is the key's empirical Shannon entropy per character times its length: it
catches `aaaa...` and `passwordpassword...`, it cannot prove a key random. Generate one
with `python -c "import secrets; print(secrets.token_urlsafe(48))"`.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal

from surveillance.errors import SurveillanceError
from surveillance.settings import DEMO_PSEUDONYM_KEY

MIN_KEY_BYTES = 32
MIN_KEY_BITS = 128.0
_HOW = ('generate one with python -c "import secrets; print(secrets.token_urlsafe(48))" '
        "and keep it in a secret store")


class KeyRefused(SurveillanceError):
    """The pseudonym key must not be used in this mode."""


def estimated_bits(key: bytes) -> float:
    """Empirical Shannon entropy of the key's bytes times its length (an upper bound on
    what the key can hold, a lower bound is not computable from one sample)."""
    if not key:
        return 0.0
    n = len(key)
    per_byte = -sum(c / n * math.log2(c / n) for c in Counter(key).values())
    return per_byte * n


def check_key(key: str, mode: Literal["production", "demo", "test"]) -> str | None:
    """None when the key is fit; a warning for the demo key in demo/test; `KeyRefused`
    with a one-line reason otherwise."""
    if not key:
        raise KeyRefused(f"SURVEILLANCE_PSEUDONYM_KEY is empty: {_HOW}")
    if key == DEMO_PSEUDONYM_KEY:
        if mode == "production":
            raise KeyRefused(
                "SURVEILLANCE_PSEUDONYM_KEY is not set (or is the public demo key), and "
                f"production needs its own secret key: {_HOW}; SURVEILLANCE_MODE=demo "
                "runs with the demo key"
            )
        return (f"running in {mode} mode with the public demo pseudonym key: anyone can "
                "reverse these pseudonyms; never use it with real patient data")
    if mode != "production":
        return None
    raw = key.encode()
    if len(raw) < MIN_KEY_BYTES:
        raise KeyRefused(
            f"SURVEILLANCE_PSEUDONYM_KEY is {len(raw)} bytes; production needs at least "
            f"{MIN_KEY_BYTES} random bytes: {_HOW}"
        )
    bits = estimated_bits(raw)
    if bits < MIN_KEY_BITS:
        raise KeyRefused(
            f"SURVEILLANCE_PSEUDONYM_KEY looks far from random (about {bits:.0f} bits, "
            f"production needs {MIN_KEY_BITS:.0f}): {_HOW}"
        )
    return None
