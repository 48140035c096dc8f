"""Pseudonymization at ingest: keyed HMAC-SHA256 of patient, accession and study identifiers.

The same key gives the same pseudonym, so joins still work downstream; without the key a
pseudonym cannot be reversed or recomputed from a guessed identifier. The namespace keeps
an accession and a patient id with the same digits from colliding.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

Namespace = Literal["patient", "accession", "study", "submission"]

#: Hex characters kept: 96 bits, ample against collisions at health-system volumes.
PSEUDONYM_CHARS = 24


def pseudonymize(key: bytes, namespace: Namespace, identifier: str) -> str:
    # The one-shot C HMAC: hmac.new sets up the key pads in Python on every call.
    digest = hmac.digest(key, f"{namespace}:{identifier}".encode(), hashlib.sha256).hex()
    return f"{namespace[0]}_{digest[:PSEUDONYM_CHARS]}"
