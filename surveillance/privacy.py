"""Pseudonymization at ingest: keyed HMAC-SHA256 of patient, accession and study identifiers.

The same key gives the same pseudonym, so joins still work downstream; without the key a
pseudonym cannot be reversed or recomputed from a guessed identifier. The namespace keeps
an accession and a patient id with the same digits from colliding.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Literal

Namespace = Literal["patient", "accession", "study", "submission"]

#: Hex characters kept: 96 bits, ample against collisions at health-system volumes.
PSEUDONYM_CHARS = 24


def pseudonymize(key: bytes, namespace: Namespace, identifier: str) -> str:
    mac = _keyed(key, namespace).copy()
    mac.update(identifier.encode())
    return f"{namespace[0]}_{mac.hexdigest()[:PSEUDONYM_CHARS]}"


@lru_cache(maxsize=16)
def _keyed(key: bytes, namespace: Namespace) -> hmac.HMAC:
    """The HMAC of `key` that has read "<namespace>:": a copy finishes a pseudonym. Setting
    up the key's pads for every identifier was half of the cost (ingest pseudonymizes
    two to three identifiers per input event)."""
    return hmac.new(key, f"{namespace}:".encode(), hashlib.sha256)
