"""What each manifest reader gives (raw records, or columns for delimited text), and the text
helpers the readers share: decoding with a located error, line positions, repeated columns."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from genbatch.echo import shown
from genbatch.errors import ManifestError, Problem


@dataclass
class Raw:
    """A reader's result: the header, the records as (line, {column: value}), and the
    problems of the file's structure. Delimited text gives its records column by column
    instead (``lines`` and ``columns``, each column as long as ``lines`` and in header order),
    which holds a million rows in far less memory than a dict per row."""

    header: list[str] | None
    records: list[tuple[int, dict[str, Any]]]
    problems: list[Problem]
    warnings: list[str] = field(default_factory=list)
    lines: Sequence[int] | None = None
    columns: list[Sequence[Any]] | None = None


def decode(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        hint = " (it looks like UTF-16)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ManifestError(
            [
                Problem(
                    name,
                    line,
                    str(column),
                    f"byte 0x{data[err.start]:02x} is not valid UTF-8{hint}; save the file as UTF-8 "
                    "(with or without BOM)",
                    fatal=True,
                )
            ]
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        # Text never holds NUL; UTF-16 without a BOM decodes as "valid" UTF-8 full of them.
        line, column = position(text, nul)
        raise ManifestError(
            [
                Problem(
                    name,
                    line,
                    str(column),
                    "a NUL character: this is not a UTF-8 text file (UTF-16?); save it as UTF-8",
                    fatal=True,
                )
            ]
        )
    return text


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of ``offset``, counting \\r\\n, \\r and \\n as line breaks."""
    before = text[:offset]
    line = count_breaks(before) + 1
    match = None
    for match in BREAK.finditer(before):
        pass
    return line, offset - (match.end() if match else 0) + 1


BREAK = re.compile(r"\r\n|\r|\n")
NUMBER = re.compile(r"\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*")


def count_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def duplicate_columns(header: list[str], name: str, line: int) -> list[Problem]:
    first: dict[str, int] = {}
    problems = []
    for number, column in enumerate(header, start=1):
        if column in first:
            problems.append(
                Problem(
                    name,
                    line,
                    str(number),
                    f"column {shown(column)} repeats column {first[column]}; every column needs its own name",
                    fatal=True,
                )
            )
        else:
            first[column] = number
    return problems


# JSON values a manifest can hold: integers of at most this many digits (a seed has 20) and
# nesting at most this deep. Python's own limits are 4,300 digits and the C stack, and
# passing either is a traceback, not a message.
