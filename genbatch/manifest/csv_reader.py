"""The exact CSV reader, and TSV.

CSV whose rows each sit on one line and whose quotes are well formed is split by the
standard library's reader; any other CSV by a small exact reader of its own
(``split_csv_exact``), because the standard one silently drops a stray quote and cannot say
on which column a problem is. A quote that leaves rows in doubt is an error, never a silent
merge of rows (the rule is at ``_swallowed_rows``). A file with no quote character at all
is read by pyarrow first (genbatch.manifest.csv_fast), which gives the same cells much faster.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from genbatch.echo import shown
from genbatch.errors import Problem
from genbatch.manifest.raw import BREAK, NUMBER, Raw, count_breaks, duplicate_columns


@dataclass
class _Record:
    line: int
    cells: list[str]
    last_line: int = 0  # the physical line the record ends on
    # quoted cells that span lines: (cell index, line, column where the quote opens)
    multiline: list[tuple[int, int, int]] = field(default_factory=list)


def _split_csv(text: str, name: str, delimiter: str, problems: list[Problem]) -> list[_Record]:
    """Split CSV text into records. Files whose records each sit on one line and whose quotes
    are well formed (most) go through the standard library's C reader; any other file
    through :func:`split_csv_exact`, which says where a problem is."""
    return split_csv_simple(text, delimiter) or split_csv_exact(text, name, delimiter, problems)


def split_csv_simple(text: str, delimiter: str) -> list[_Record] | None:
    """The records, if none spans lines and the strict standard reader accepts every quote;
    else None."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[_Record] = []
    line = 1
    try:
        for cells in reader:
            if reader.line_num != line:
                return None
            records.append(_Record(line, cells, line))
            line += 1
    except csv.Error:  # a stray quote, or a field over csv's size limit
        return None
    return records or None


def split_csv_exact(text: str, name: str, delimiter: str, problems: list[Problem]) -> list[_Record]:
    """Split CSV text into records (RFC 4180 quoting: a field that starts with ``"`` ends at
    the next lone ``"``, ``""`` inside it is one quote, and it may span lines). The standard
    library's reader cannot be used: it silently drops a stray quote (``"a green" star`` ->
    ``a green star``) and cannot say on which column a problem is.

    A quote inside an unquoted field (``a "green" star``) is kept as text: nothing is merged
    or lost, and spreadsheets read it the same way. Structural problems are fatal: once a
    quote is unbalanced, where every later row starts is in doubt."""
    return _ExactCsv(text, name, delimiter, problems).records()


class _Unbalanced(Exception):
    """A quote that leaves where every later row starts in doubt (its problem is recorded)."""


class _ExactCsv:
    """The scanner behind :func:`split_csv_exact`: a position in the text, and the line and
    the offset where that line starts (for FILE:LINE:COL)."""

    def __init__(self, text: str, name: str, delimiter: str, problems: list[Problem]):
        self.text, self.name, self.delimiter, self.problems = text, name, delimiter, problems
        self.stop = re.compile("[" + re.escape(delimiter) + "\r\n]")
        self.line_end = re.compile("[\r\n]")
        self.pos, self.line, self.line_start = 0, 1, 0

    def records(self) -> list[_Record]:
        text, n = self.text, len(self.text)
        records: list[_Record] = []
        while self.pos < n:
            end_match = self.line_end.search(text, self.pos)
            end = end_match.start() if end_match else n
            if text.find('"', self.pos, end) < 0:  # the common case: a line without quotes is one record
                records.append(_Record(self.line, text[self.pos : end].split(self.delimiter), self.line))
                self._next_line(end)
                continue
            try:
                records.append(self._record())
            except _Unbalanced:
                return records
        return records

    def _next_line(self, at: int) -> None:
        """Step over the line break at ``at``."""
        self.pos = at + (2 if self.text.startswith("\r\n", at) else 1)
        self.line += 1
        self.line_start = self.pos

    def _record(self) -> _Record:
        """One record that has a quote somewhere: its fields one by one to the line break."""
        text, n = self.text, len(self.text)
        record = _Record(self.line, [])
        while True:
            if text.startswith('"', self.pos):
                value = self._quoted(record)
            else:
                match = self.stop.search(text, self.pos)
                end = match.start() if match else n
                value = text[self.pos : end]
                self.pos = end
            record.cells.append(value)
            if self.pos < n and text[self.pos] == self.delimiter:
                self.pos += 1
                continue
            record.last_line = self.line
            if self.pos < n:  # a line break ends the record
                self._next_line(self.pos)
            return record

    def _quoted(self, record: _Record) -> str:
        """The quoted field at ``pos``; the scanner is left after its closing quote."""
        text, pos = self.text, self.pos
        open_line, open_col = self.line, pos - self.line_start + 1
        parts, p = [], pos + 1
        while True:
            q = text.find('"', p)
            if q < 0:
                self._fatal(
                    open_line,
                    open_col,
                    "this quoted field is never closed: it runs to the end of the file and swallows "
                    f'every line after it ({count_breaks(text[pos:])} lines); close it with " or '
                    'double a quote that is part of the text ("")',
                )
            parts.append(text[p:q])
            if not text.startswith('"', q + 1):
                break
            parts.append('"')
            p = q + 2
        breaks = count_breaks(text[pos:q]) if self.line_end.search(text, pos, q) else 0
        if breaks:
            self.line += breaks
            self.line_start = max(text.rfind("\n", pos, q), text.rfind("\r", pos, q)) + 1
            record.multiline.append((len(record.cells), open_line, open_col))
        self.pos = q + 1
        if self.pos < len(text) and text[self.pos] not in (self.delimiter, "\r", "\n"):
            after = self.stop.search(text, self.pos)
            tail = text[self.pos : after.start() if after else len(text)]
            self._fatal(
                self.line,
                self.pos - self.line_start + 1,
                f"text {shown(tail, 40)} follows the closing quote of the field that starts at line "
                f"{open_line} column {open_col}; quote the whole field and double the quotes inside "
                f'it, e.g. """a green"" star"',
            )
        return parts[0] if len(parts) == 1 else "".join(parts)

    def _fatal(self, line: int, column: int, message: str) -> NoReturn:
        self.problems.append(Problem(self.name, line, str(column), message, fatal=True))
        raise _Unbalanced


def _split_tsv(text: str) -> list[_Record]:
    """TSV is not quoted: one line is one row, a tab separates cells, and a prompt that
    begins with a double quote keeps it."""
    return [_Record(number, line.split("\t")) for number, line in enumerate(BREAK.split(text), start=1)]


def _number_columns(records: list[_Record], width: int) -> list[int]:
    """The columns whose every non-empty cell is a number, in the rows of the header's width
    (cells that span lines are not counted)."""
    numeric: dict[int, bool] = {}
    for record in records:
        if len(record.cells) != width:
            continue
        spanning = {index for index, _, _ in record.multiline}
        for j, cell in enumerate(record.cells):
            if cell.strip() and j not in spanning:
                numeric[j] = numeric.get(j, True) and bool(NUMBER.fullmatch(cell))
    return [j for j, yes in numeric.items() if yes]


def _swallowed_rows(records: list[_Record], width: int, delimiter: str, text: str) -> Iterator[tuple[int, int, str]]:
    """Rows whose quoted field spans lines and seems to hold other rows: (line, column, why).

    A quoted field may span lines (multi-line prompts are legitimate), so the rule is that
    such a row is an error when
    - its last field spans lines, holds the delimiter and leaves the row short of the
      header's width (``"b,2`` ... ``d,4"``: the cells of the rows it swallowed are in it), or
    - two or more of the physical lines it spans, read on their own with the quotes taken
      out, are rows of the header's width with numbers where the file's rows always have
      numbers (a seed, a width; cells that span lines are not counted): ``"b,2`` + ``c",3`` are two rows, while
      ``"A cat, sitting`` + ``on a mat",4`` is one row with a two-line prompt. A comma count
      alone is no evidence, since prose has commas; one such line is allowed (a prompt's
      last line with the row's own cells after it).
    A file without numeric columns (or a one-column file) cannot tell swallowed rows from
    text by the second test; the first, and the quote left open at the end of the file, hold."""
    if not any(record.multiline for record in records):
        return
    number_columns = _number_columns(records, width)

    def row_like(physical: str) -> bool:
        cells = physical.replace('"', "").split(delimiter)
        return (
            len(cells) == width
            and all(NUMBER.fullmatch(cells[j]) or not cells[j].strip() for j in number_columns)
            and any(cells[j].strip() for j in number_columns)
        )

    physical_lines: list[str] | None = None
    for record in records:
        if not record.multiline:
            continue
        index, open_line, open_col = record.multiline[-1]
        value = record.cells[index]
        if index == len(record.cells) - 1 and len(record.cells) < width and delimiter in value:
            yield (
                open_line,
                open_col,
                (
                    f"its row has {len(record.cells)} of the header's {width} fields and the {delimiter!r} "
                    f"separators of lines {open_line}-{record.last_line} are inside it"
                ),
            )
            continue
        if not number_columns or width < 2:
            continue
        if physical_lines is None:
            physical_lines = BREAK.split(text)
        rows = [number for number in range(record.line, record.last_line + 1) if row_like(physical_lines[number - 1])]
        if len(rows) >= 2:
            shown_rows = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            yield (
                record.multiline[0][1],
                record.multiline[0][2],
                (f"lines {shown_rows} within it each read as a row of their own"),
            )


def read_delimited(text: str, name: str, delimiter: str) -> Raw:
    """CSV (``delimiter`` ``,``) or TSV (a tab) text as columns (see Raw)."""
    problems: list[Problem] = []
    split = _split_tsv(text) if delimiter == "\t" else _split_csv(text, name, delimiter, problems)
    lines: list[int] = []
    rows: list[list[str]] = []
    header: list[str] | None = None
    header_line = 0
    body: list[_Record] = []
    for record in split:
        cells = record.cells
        if all(c.strip() == "" for c in cells):
            continue
        if header is None:
            header, header_line = [c.strip() for c in cells], record.line
            problems.extend(duplicate_columns(header, name, header_line))
            continue
        body.append(record)
    if header is None:
        return Raw(None, [], problems)
    if delimiter != "\t":
        for line, column, why in _swallowed_rows(body, len(header), delimiter, text):
            problems.append(
                Problem(
                    name,
                    line,
                    str(column),
                    f"the quoted field that starts here spans lines and seems to have swallowed rows: {why}; "
                    'check for a missing or stray quote (a quote that is part of the text is written "")',
                    fatal=True,
                )
            )
    for record in body:
        cells = record.cells
        if len(cells) > len(header):
            problems.append(
                Problem(
                    name,
                    record.line,
                    None,
                    f"row has {len(cells)} fields but the header (line {header_line}) has {len(header)}; "
                    + (
                        "quote fields that contain a comma"
                        if delimiter != "\t"
                        else "a prompt cannot contain a tab in TSV"
                    ),
                )
            )
            continue
        lines.append(record.line)
        rows.append(cells + [""] * (len(header) - len(cells)) if len(cells) < len(header) else cells)
    columns: list[Sequence[Any]] = list(zip(*rows)) if rows else [() for _ in header]
    return Raw(header, [], problems, lines=lines, columns=columns)
