"""Alert texts and ids fitted to the `Alert` contract, whatever the names they quote.

A summary may hold up to `MAX_SUMMARY_CHARS` characters and an id up to `MAX_ID_CHARS`,
but tool, version, site and scanner names come from the sites and have no bound. A text
is built with every name in full; only if that is too long is it built again with the
names cut in the middle to `NAME_LIMITS` characters in turn (the start and the end of a
name say most: "Main Campus…Building 07"), so every text that fitted before reads the
same. An id too long keeps its readable start and ends in a digest of the whole, so a
replay still produces the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial

#: Longest names quoted in an alert's text, tried in turn until the text fits (None: full).
NAME_LIMITS = (None, 48, 32, 16)
#: Longest alert summary and id (`contracts.outputs.Alert`, `contracts.base.Id`).
MAX_SUMMARY_CHARS = 1_000
MAX_ID_CHARS = 128
_DIGEST_CHARS = 16


Names = Callable[[str], str]  # a name as quoted in one attempt at a text


def cut(text: str, limit: int | None) -> str:
    """`text` in at most `limit` characters: its start and end, the cut marked."""
    if limit is None or len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head):]}"


def fitted(build: Callable[[Names], str]) -> str:
    """The text `build` makes with full names, or with shorter ones if that is too long."""
    for limit in NAME_LIMITS:
        text = build(partial(cut, limit=limit))
        if len(text) <= MAX_SUMMARY_CHARS:
            return text
    # Only numbers are left to shorten it (counts have no bound on their digits).
    return text[: MAX_SUMMARY_CHARS - 1] + "…"


def bounded_id(*parts: str) -> str:
    """`parts` joined by ':'; past `MAX_ID_CHARS`, its start and a digest of the whole."""
    whole = ":".join(parts)
    if len(whole) <= MAX_ID_CHARS:
        return whole
    digest = hashlib.sha256(whole.encode()).hexdigest()[:_DIGEST_CHARS]
    return f"{whole[: MAX_ID_CHARS - _DIGEST_CHARS - 1]}:{digest}"
