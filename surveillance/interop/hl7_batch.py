"""HL7 batch files -> the messages in them, in order. Pure.

Takes what archives hold: FHS/BHS ... BTS/FTS batches, bare runs of messages (each one
starts at its MSH), CR, LF or CRLF segment ends, and files of saved MLLP frames (the
0x0B/0x1C framing bytes are dropped). Batch header and trailer segments carry no report.
Lines before the first MSH are yielded as one chunk too, so that the caller rejects them
with a reason instead of losing them silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_LINE = re.compile(rb"\r\n|\r|\n")
_BATCH = (b"FHS", b"BHS", b"BTS", b"FTS")


def split_batch(data: bytes) -> Iterator[bytes]:
    data = data.replace(b"\x0b", b"").replace(b"\x1c", b"")
    current: list[bytes] = []
    for line in _LINE.split(data):
        if not line.strip():
            continue
        tag = line[:3]
        if tag in _BATCH or tag == b"MSH":
            if current:
                yield b"\r".join(current) + b"\r"
            current = [line] if tag == b"MSH" else []
        else:
            current.append(line)
    if current:
        yield b"\r".join(current) + b"\r"
