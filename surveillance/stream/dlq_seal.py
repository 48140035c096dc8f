"""Dead letters with their original bytes encrypted (`SURVEILLANCE_DLQ_ENCRYPTION_KEY`).

A rejected event is kept whole so that on-call can see why it failed and replay it, and
so it may carry raw identifiers and report text. With a key configured, the original
bytes are stored as a Fernet token (AES-128-CBC + HMAC-SHA256, from `cryptography`): a
reader of the DLQ topic sees the reason, offsets and size, and needs the key for the
rest. `open_letter` is the way back.
"""

from __future__ import annotations

import base64
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken

from surveillance.contracts import DeadLetter
from surveillance.errors import SurveillanceError


class DlqKeyError(SurveillanceError):
    """The DLQ encryption key is not a Fernet key, or does not open this letter."""


class Sealer:
    """Seals original bytes with the key (or base64 only, when the key is empty)."""

    def __init__(self, key: str) -> None:
        self._fernet = _fernet(key) if key else None

    @property
    def encryption(self) -> Literal["none", "fernet"]:
        return "fernet" if self._fernet is not None else "none"

    def seal(self, original: bytes) -> str:
        if self._fernet is None:
            return base64.b64encode(original).decode()
        return self._fernet.encrypt(original).decode()


def open_letter(letter: DeadLetter, key: str = "") -> bytes:
    """The original bytes of a dead letter (the key is needed when it is encrypted)."""
    if letter.encryption == "none":
        return base64.b64decode(letter.original_b64)
    if not key:
        raise DlqKeyError("this dead letter is encrypted: set SURVEILLANCE_DLQ_ENCRYPTION_KEY")
    try:
        return _fernet(key).decrypt(letter.original_b64.encode())
    except InvalidToken as exc:
        raise DlqKeyError("the DLQ key does not open this dead letter (another key?)") from exc


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError as exc:
        raise DlqKeyError(
            "SURVEILLANCE_DLQ_ENCRYPTION_KEY is not a Fernet key (32 url-safe base64 bytes): "
            'make one with python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"'
        ) from exc
