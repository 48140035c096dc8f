"""The report's free text, sealed in the intake's store: narrative, reporter name and contact.

The narrative can name the patient and the reporter's contact is personal data, so the
local store never holds them in clear. With a store key (AES-256-GCM, the row's key as
associated data, so a sealed blob cannot be moved to another row) they are kept sealed
beside the event; without one they are not kept at all. Either way the stored event
carries `NOT_KEPT` in their place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from surveillance.contracts import AdverseEvent

NOT_KEPT = "[not kept in the intake store]"
_VERSION = b"\x01"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class Private:
    narrative: str
    reporter_name: str
    reporter_contact: str


class SealError(Exception):
    """A sealed blob that the configured key cannot open (another key, or altered)."""


def split(event: AdverseEvent) -> tuple[AdverseEvent, Private]:
    """The event with its private text replaced by `NOT_KEPT`, and that text."""
    private = Private(event.event.narrative, event.reporter.name, event.reporter.contact)
    redacted = event.model_copy(
        update={
            "event": event.event.model_copy(update={"narrative": NOT_KEPT}),
            "reporter": event.reporter.model_copy(update={"name": NOT_KEPT, "contact": NOT_KEPT}),
        }
    )
    return redacted, private


def join(event: AdverseEvent, private: Private) -> AdverseEvent:
    """The event with its private text put back."""
    return event.model_copy(
        update={
            "event": event.event.model_copy(update={"narrative": private.narrative}),
            "reporter": event.reporter.model_copy(
                update={"name": private.reporter_name, "contact": private.reporter_contact}
            ),
        }
    )


class Sealer:
    """Seals and opens `Private` with a 32-byte key; without a key, seals nothing."""

    def __init__(self, key: bytes | None) -> None:
        if key is not None and len(key) != 32:
            raise ValueError("the store key must be 32 bytes")
        self._aead = AESGCM(key) if key is not None else None

    @property
    def keeps_private_text(self) -> bool:
        return self._aead is not None

    def seal(self, private: Private, row_key: str) -> bytes | None:
        if self._aead is None:
            return None
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(
            [private.narrative, private.reporter_name, private.reporter_contact]
        ).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, row_key.encode())

    def open(self, blob: bytes | None, row_key: str) -> Private | None:
        """The sealed text, None when none was kept; `SealError` when it cannot be opened."""
        if blob is None:
            return None
        if self._aead is None or blob[:1] != _VERSION:
            raise SealError("the report's text was sealed with a key this intake does not have")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, row_key.encode())
        except InvalidTag:
            raise SealError(
                "the report's text was sealed with another key, or the store was altered"
            ) from None
        narrative, name, contact = json.loads(plain)
        return Private(narrative, name, contact)
