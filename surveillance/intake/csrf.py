"""CSRF tokens for the form: HMAC-signed, bound to the person and to the form's submission id.

The OWASP "HMAC based token" pattern: no server-side session is needed, a token minted for
one person cannot be replayed by another, and it expires after `max_age` seconds. A
cross-site page cannot read the token, so it cannot forge a valid POST even though the
browser would attach the person's basic-auth credentials.
"""

from __future__ import annotations

import hashlib
import hmac


def _sign(secret: bytes, identity: str, submission_id: str, issued: int) -> str:
    msg = f"{identity}\x00{submission_id}\x00{issued}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def make_token(secret: bytes, identity: str, submission_id: str, now: int) -> str:
    return f"{now}.{_sign(secret, identity, submission_id, now)}"


def check_token(
    secret: bytes, token: str, identity: str, submission_id: str, now: int, max_age: int
) -> bool:
    issued_s, _, mac = token.partition(".")
    if not issued_s.isdigit() or len(issued_s) > 12:
        return False
    issued = int(issued_s)
    if not 0 <= now - issued <= max_age:
        return False
    return hmac.compare_digest(mac, _sign(secret, identity, submission_id, issued))
