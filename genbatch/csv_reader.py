"""The exact CSV reader, and TSV.

CSV whose rows each sit on one line and whose quotes are well formed is split by the
standard library's reader; any other CSV by a small exact reader of its own
(``split_csv_exact``), because the standard one silently drops a stray quote and cannot say
on which column a problem is. A quote that leaves rows in doubt is an error, never a silent
merge of rows (the rule is at ``_swallowed_rows``). A file with no quote character at all
is read by pyarrow first (genbatch.csv_fast), which gives the same cells much faster.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .echo import shown
from .errors import Problem
from .manifest_raw import BREAK, NUMBER, Raw, count_breaks, duplicate_columns


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
    records: list[_Record] = []
    stop = re.compile("[" + re.escape(delimiter) + "\r\n]")
    line_end = re.compile("[\r\n]")
    n, pos, line, line_start = len(text), 0, 1, 0
    while pos < n:
        end_match = line_end.search(text, pos)
        end = end_match.start() if end_match else n
        if text.find('"', pos, end) < 0:  # the common case: a line without quotes is one record
            records.append(_Record(line, text[pos:end].split(delimiter), line))
            pos = end + (2 if text.startswith("\r\n", end) else 1)
            line += 1
            line_start = pos
            continue
        record = _Record(line, [])
        while True:
            if text.startswith('"', pos):
                open_line, open_col = line, pos - line_start + 1
                parts, p = [], pos + 1
                while True:
                    q = text.find('"', p)
                    if q < 0:
                        problems.append(
                            Problem(
                                name,
                                open_line,
                                str(open_col),
                                "this quoted field is never closed: it runs to the end of the file and swallows "
                                f'every line after it ({count_breaks(text[pos:])} lines); close it with " or '
                                'double a quote that is part of the text ("")',
                                fatal=True,
                            )
                        )
                        return records
                    parts.append(text[p:q])
                    if text.startswith('"', q + 1):
                        parts.append('"')
                        p = q + 2
                        continue
                    break
                breaks = count_breaks(text[pos:q]) if line_end.search(text, pos, q) else 0
                if breaks:
                    line += breaks
                    line_start = max(text.rfind("\n", pos, q), text.rfind("\r", pos, q)) + 1
                    record.multiline.append((len(record.cells), open_line, open_col))
                pos = q + 1
                value = parts[0] if len(parts) == 1 else "".join(parts)
                if pos < n and text[pos] not in (delimiter, "\r", "\n"):
                    after = stop.search(text, pos)
                    tail = text[pos : after.start() if after else n]
                    problems.append(
                        Problem(
                            name,
                            line,
                            str(pos - line_start + 1),
                            f"text {shown(tail, 40)} follows the closing quote of the field that starts at line "
                            f"{open_line} column {open_col}; quote the whole field and double the quotes inside "
                            f'it, e.g. """a green"" star"',
                            fatal=True,
                        )
                    )
                    return records
            else:
                match = stop.search(text, pos)
                end = match.start() if match else n
                value = text[pos:end]
                pos = end
            record.cells.append(value)
            if pos < n and text[pos] == delimiter:
                pos += 1
                continue
            record.last_line = line
            if pos < n:  # a line break ends the record
                pos += 2 if text.startswith("\r\n", pos) else 1
                line += 1
                line_start = pos
            break
        records.append(record)
    return records


def _split_tsv(text: str) -> list[_Record]:
    """TSV is not quoted: one line is one row, a tab separates cells, and a prompt that
    begins with a double quote keeps it."""
    return [_Record(number, line.split("\t")) for number, line in enumerate(BREAK.split(text), start=1)]


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
    numeric: dict[int, bool] = {}
    for record in records:
        if len(record.cells) != width:
            continue
        spanning = {index for index, _, _ in record.multiline}
        for j, cell in enumerate(record.cells):
            if cell.strip() and j not in spanning:
                numeric[j] = numeric.get(j, True) and bool(NUMBER.fullmatch(cell))
    number_columns = [j for j, yes in numeric.items() if yes]

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
