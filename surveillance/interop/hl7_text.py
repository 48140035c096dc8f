"""HL7 v2 values: character sets (MSH-18), escape sequences and timestamps. Pure.

Escape sequences (v2.8 chapter 2.7): ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` give back the
delimiters the message declared in MSH-1/MSH-2; ``\\.br\\`` and ``\\.sp n\\`` are line
breaks; ``\\Xhh..\\`` is hex of bytes in the message's character set; highlighting
(``\\H\\ \\N\\``), other formatting commands and locally defined ``\\Z..\\`` sequences
carry no words and are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache

#: HL7 table 0211 (alternate character sets) -> Python codec. Only ASCII-compatible
#: sets: MLLP framing and the segment terminator are single bytes.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "iso8859-1",
    "ISO IR100": "iso8859-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "GB 18030-2000": "gb18030",
    "BIG-5": "big5",
    "KS X 1001": "euc_kr",
    "ISO IR87": "iso2022_jp",
    # Not in table 0211, but what interface engines are seen to send.
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
    "LATIN1": "iso8859-1",
}


class ValueProblem(ValueError):
    """A value that cannot be read; the message says which and why (never the value)."""


def codec(charset: str) -> str:
    """The Python codec of an MSH-18 value (its first repetition)."""
    name = charset.strip().upper()
    if name not in CHARSETS:
        raise ValueProblem(f"MSH-18 character set {charset.strip()[:40]!r} is not supported "
                           f"(supported: {', '.join(sorted(CHARSETS))})")
    return CHARSETS[name]


@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def from_msh(cls, msh: str) -> Delimiters:
        """MSH-1 is the character after "MSH", MSH-2 the next four (escape may be absent)."""
        if len(msh) < 5 or not msh.startswith("MSH"):
            raise ValueProblem("the message does not start with an MSH segment")
        field = msh[3]
        return _delimiters(field, msh[4:].split(field, 1)[0])


@lru_cache(maxsize=64)
def _delimiters(field: str, enc: str) -> Delimiters:
    """Feeds use one set of delimiters; read it once."""
    if len(enc) < 2 or len(set(enc)) != len(enc) or field in enc:
        raise ValueProblem("MSH-2 encoding characters are missing or repeated")
    return Delimiters(
        field=field,
        component=enc[0],
        repetition=enc[1],
        escape=enc[2] if len(enc) > 2 else "",
        subcomponent=enc[3] if len(enc) > 3 else "",
    )


@lru_cache(maxsize=64)
def _escape_pattern(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(f"{e}([^{e}]*){e}")


_FORMAT_SP = re.compile(r"\.sp\s*(\d*)$")


def unescape(value: str, delimiters: Delimiters, charset: str) -> str:
    """Decode the escape sequences of one value (a whole TX/FT line, or one component)."""
    if not delimiters.escape or delimiters.escape not in value:
        return value
    names = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": delimiters.escape,
    }

    def one(match: re.Match[str]) -> str:
        seq = match.group(1)
        if seq in names:
            return names[seq]
        if seq == ".br":
            return "\n"
        sp = _FORMAT_SP.match(seq)
        if sp:
            return "\n" * max(int(sp.group(1) or 1), 1)
        if seq[:1] == "X" and len(seq) > 1:
            try:
                return bytes.fromhex(seq[1:]).decode(charset, errors="replace")
            except ValueError:
                return "\ufffd"
        # Highlighting (H, N), other formatting (.in .ti .sk .ce .fi .nf), character
        # set switches (C, M) and local sequences (Z): no words to keep.
        return ""

    return _escape_pattern(delimiters.escape).sub(one, value)


_TS = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$"
)


def parse_timestamp(value: str, zone: tzinfo) -> datetime:
    """An HL7 TS/DTM (``YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]``) as an aware datetime.

    A value without an offset is local time of the sending facility (`zone`); a value
    without a day is refused: a report time needs at least a date.
    """
    m = _TS.match(value.strip())
    if m is None:
        raise ValueProblem("is not an HL7 timestamp (YYYYMMDDHHMM[SS][+/-ZZZZ])")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    if day is None:
        raise ValueProblem("has no day (at least YYYYMMDD is needed)")
    micro = int((frac or "0").ljust(6, "0")[:6])
    tz: tzinfo = zone
    if offset is not None:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            raise ValueProblem("has an impossible UTC offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0),
            int(second or 0), micro, tzinfo=tz,
        )
    except ValueError as exc:
        raise ValueProblem(f"is not a calendar date/time ({exc})") from exc
