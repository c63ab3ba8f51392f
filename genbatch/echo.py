"""How text that came from a user's files is shown in messages.

A manifest cell, column name, model name or file name can hold anything: terminal escape
sequences, bidi overrides, a megabyte of text, a lone surrogate. None of it may reach the
terminal raw, so every message that quotes such text goes through :func:`shown` (quoted,
like ``repr``) or :func:`shown_bare` (unquoted, for file names in ``FILE:LINE:COLUMN``).
"""

from __future__ import annotations

from typing import Any

LIMIT = 80


def shown(value: Any, limit: int = LIMIT) -> str:
    """``value`` as ``repr`` shows it (control, format and surrogate characters escaped),
    cut to ``limit`` characters with the full length noted."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        try:
            return f"<a number with {len(str(abs(value)))} digits>"
        except ValueError:  # past Python's 4,300-digit limit for str(int)
            return f"<a number with about {int(value.bit_length() * 0.30103) + 1} digits>"
    try:
        text = repr(value)
    except Exception:  # RecursionError for absurdly nested values, ValueError for huge ints inside
        return f"<{type(value).__name__}>"
    return _cut(text, limit)


def shown_bare(text: Any, limit: int = 200) -> str:
    """``text`` without quotes, every non-printable character escaped (``\\x1b``, ``\\u202e``,
    ``\\udcff`` for a byte of a file name that is not UTF-8)."""
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))
    return _cut(escaped, limit)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"
