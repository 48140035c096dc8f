"""CSV cells a spreadsheet will not run: OWASP's CSV-injection rule, in one place.

A cell that begins with `=`, `+`, `-` or `@` is read as a formula by Excel, LibreOffice
and Google Sheets, and a leading tab or carriage return can hide one. Such a cell gets a
leading `'`, which spreadsheets show as text. Only text is escaped: numbers stay numbers
(a negative value is written as a number, not as a formula).
"""

from __future__ import annotations

from typing import TypeVar

FORMULA_TRIGGERS = frozenset("=+-@\t\r")

V = TypeVar("V")


def spreadsheet_safe(value: V) -> V | str:
    """`value` as a CSV cell: text that would start a formula gets a leading `'`."""
    if isinstance(value, str) and value[:1] in FORMULA_TRIGGERS:
        return "'" + value
    return value
