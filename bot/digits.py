"""Numbers from outside text (headers, slash-command words, form fields, cloud fields), read one way.

`str.isdigit()` says yes to `¹` and `٣`, and `int()` takes `٣`, `1_000`, `+5` and, slowly, thousands of
digits; the first crashes whoever trusted `isdigit()`, the others let odd text through as a number. Here a
number is ASCII digits only, and no longer than the caller allows, so a stranger's text is a number or
None, never an exception.
"""

from __future__ import annotations

import re

_ASCII_DIGITS = re.compile(r"[0-9]+")
QUOTE_LIMIT = 12  # how much of a text that is not a number a sentence repeats


def ascii_int(text: str | None, *, max_digits: int) -> int | None:
    """The whole number `text` spells in ASCII digits (at most `max_digits` of them), else None."""
    if text is None or len(text) > max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)


def quoted(value: object) -> str:
    """Enough of a value to show what was wrong with it, never the whole of a long one."""
    text = value if isinstance(value, str) else repr(value)
    return repr(text) if len(text) <= QUOTE_LIMIT else repr(text[:QUOTE_LIMIT]) + f"… ({len(text)} characters)"
