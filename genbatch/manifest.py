"""Read a manifest of prompts (CSV, TSV, JSONL, plain text, Parquet) into validated rows.

Every problem is collected, not just the first, and located as ``FILE:LINE:COLUMN`` where
LINE is the physical line on which the row starts (for Parquet: the 1-based row number).

CSV whose rows each sit on one line and whose quotes are well formed is read with the
standard library's reader; any other CSV with a small exact reader of its own
(``_split_csv_exact``), because the standard one silently drops a stray quote and cannot say
on which column a problem is. A quote that leaves rows in doubt is an error, never a silent
merge of rows (the rule is at ``_swallowed_rows``). Parquet, which has no
lines, is read with pyarrow.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .a1111 import is_prompt_file, read_prompt_file
from .echo import shown, shown_bare
from .errors import GenbatchError, ManifestError, Problem
from .fields import ALIASES, BY_NAME, ROW_FIELDS, Values
from .samplers import parse_scheduler

FORMATS = ("csv", "tsv", "jsonl", "txt", "a1111", "parquet")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "txt",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# A row asks for at most this many images unless --max-images-per-row says otherwise: a
# typo such as num_images=1000000000 must be a message, not a billion jobs in memory.
MAX_IMAGES_PER_ROW = 10_000

# A field genbatch understands, and the column names (compared case-insensitively, with
# spaces and dashes read as underscores) that mean it: see genbatch.fields.
FIELDS = ROW_FIELDS
# Extra near-miss targets: common spellings that are close to a field but not aliases.
_NEAR_MISS_TARGETS = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
_NEAR_MISS_TARGETS.update({"cfg_scale": "guidance_scale", "num_steps": "steps", "negative_prompts": "negative_prompt"})


_ROW_FIELD_SET = frozenset(ROW_FIELDS)


class Row(Values):
    """One valid manifest row: its generation fields in ``values`` (``None``: not given here,
    a default applies later), readable as attributes (``row.seed``), and the row's own
    columns, untouched, in ``fields``."""

    __slots__ = ("index", "line", "fields", "values")

    def __init__(self, index: int, line: int, fields: dict[str, Any] | None = None, **values: Any):
        if not _ROW_FIELD_SET.issuperset(values):
            raise TypeError(f"Row has no field {', '.join(sorted(set(values) - _ROW_FIELD_SET))}")
        self.index, self.line = index, line
        self.fields = fields if fields is not None else {}
        self.values = values  # only the fields given; the others read as None

    def __repr__(self) -> str:
        return f"Row(index={self.index}, line={self.line}, {self.values})"


@dataclass
class SkippedRow:
    """A row left out by ``--skip-invalid``, with why."""

    line: int
    prompt: str | None
    reasons: list[str]
    fields: dict[str, Any]


@dataclass
class Manifest:
    path: str
    format: str
    rows: list[Row]
    problems: list[Problem]
    skipped: list[SkippedRow]
    warnings: list[str]
    columns: dict[str, str]  # field -> the file column it was read from

    @property
    def fatal_problems(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]


def normalise_column(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def parse_assignments(items: list[str] | None, what: str) -> dict[str, str]:
    """Parse ``--column field=col`` / ``--set field=value`` options into a dict."""
    result: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = normalise_column(name)
        if not sep or not name:
            raise GenbatchError(f"{what} {item!r}: expected FIELD=VALUE, e.g. {what} width=512")
        if name not in FIELDS:
            raise GenbatchError(f"{what} {item!r}: unknown field {name!r}; known fields: {', '.join(FIELDS)}")
        result[name] = value
    return result


# --- value parsing -------------------------------------------------------------------------


class _Invalid(ValueError):
    pass


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _as_int(value: Any, what: str, lo: int, hi: int | None = None, multiple_of: int = 1) -> int:
    accepted = f"a whole number {'from ' + str(lo) + ' to ' + str(hi) if hi is not None else '>= ' + str(lo)}"
    if multiple_of > 1:
        accepted += f" that is a multiple of {multiple_of}"
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
                number = int(as_float) if as_float.is_integer() else None
            except (ValueError, OverflowError):
                number = None
    if number is None:
        raise _Invalid(f"{shown(value)} is not a valid {what}; expected {accepted}")
    if number < lo or (hi is not None and number > hi) or number % multiple_of:
        raise _Invalid(f"{what} {shown(number)} is out of range; expected {accepted}")
    return number


def _as_float(value: Any, what: str, lo: float) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise _Invalid(f"{shown(value)} is not a valid {what}; expected a number >= {lo:g}") from None
    if not math.isfinite(number) or number < lo:
        raise _Invalid(f"{what} {number:g} is out of range; expected a number >= {lo:g}")
    return number


def _as_text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Invalid(f"{shown(value)} is not valid text for {what}")
    text = value if isinstance(value, str) else str(value)
    return text.strip()


def _as_prompt(value: Any, what: str) -> str:
    text = _as_text(value, what)
    if not text:
        raise _Invalid("the prompt is empty")
    return text


_PARSE_KIND: dict[str, Callable[[Any, str], Any]] = {
    "prompt": _as_prompt,
    "scheduler": parse_scheduler,
    "text": _as_text,
    "name": lambda v, what: _as_text(v, what) or None,
}


def check_images_per_row(count: int | None, limit: int) -> None:
    """Raise ValueError if a row's ``num_images`` is over ``limit``."""
    if count is not None and count > limit:
        raise _Invalid(
            f"num_images {shown(count)} is over the limit of {limit} images per row; "
            "pass --max-images-per-row N to allow more"
        )


def parse_value(name: str, value: Any) -> Any:
    """Parse one field's value, raising ValueError with a message that says what is accepted."""
    spec = BY_NAME[name]
    if spec.kind == "int":
        return _as_int(value, name, int(spec.lo), spec.hi, spec.multiple_of)
    if spec.kind == "float":
        return _as_float(value, name, spec.lo)
    if spec.kind == "choice":
        text = _as_text(value, name).lower()
        if text not in spec.choices:
            raise _Invalid(f"{name} {text!r} is not accepted; expected {spec.accepted}")
        return text
    if spec.kind == "lora":
        from .lora import parse_specs

        return parse_specs(_as_text(value, name))
    return _PARSE_KIND[spec.kind](value, name)


# --- raw records per format ----------------------------------------------------------------
# Each reader yields (line, {column: value}) and reports structural problems as Problems.


@dataclass
class _Raw:
    header: list[str] | None
    records: list[tuple[int, dict[str, Any]]]
    problems: list[Problem]
    warnings: list[str] = field(default_factory=list)


def _decode(data: bytes, name: str) -> str:
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
        line, column = _position(text, nul)
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


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of ``offset``, counting \\r\\n, \\r and \\n as line breaks."""
    before = text[:offset]
    line = _count_breaks(before) + 1
    match = None
    for match in _BREAK.finditer(before):
        pass
    return line, offset - (match.end() if match else 0) + 1


_BREAK = re.compile(r"\r\n|\r|\n")
_NUMBER = re.compile(r"\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*")


def _count_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


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
    through :func:`_split_csv_exact`, which says where a problem is."""
    return _split_csv_simple(text, delimiter) or _split_csv_exact(text, name, delimiter, problems)


def _split_csv_simple(text: str, delimiter: str) -> list[_Record] | None:
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


def _split_csv_exact(text: str, name: str, delimiter: str, problems: list[Problem]) -> list[_Record]:
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
                                f'every line after it ({_count_breaks(text[pos:])} lines); close it with " or '
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
                breaks = _count_breaks(text[pos:q]) if line_end.search(text, pos, q) else 0
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
    return [_Record(number, line.split("\t")) for number, line in enumerate(_BREAK.split(text), start=1)]


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
                numeric[j] = numeric.get(j, True) and bool(_NUMBER.fullmatch(cell))
    number_columns = [j for j, yes in numeric.items() if yes]

    def row_like(physical: str) -> bool:
        cells = physical.replace('"', "").split(delimiter)
        return (
            len(cells) == width
            and all(_NUMBER.fullmatch(cells[j]) or not cells[j].strip() for j in number_columns)
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
            physical_lines = _BREAK.split(text)
        rows = [number for number in range(record.line, record.last_line + 1) if row_like(physical_lines[number - 1])]
        if len(rows) >= 2:
            shown_rows = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            yield (
                record.multiline[0][1],
                record.multiline[0][2],
                (f"lines {shown_rows} within it each read as a row of their own"),
            )


def _read_delimited(text: str, name: str, delimiter: str) -> _Raw:
    problems: list[Problem] = []
    split = _split_tsv(text) if delimiter == "\t" else _split_csv(text, name, delimiter, problems)
    records: list[tuple[int, dict[str, Any]]] = []
    header: list[str] | None = None
    header_line = 0
    body: list[_Record] = []
    for record in split:
        cells = record.cells
        if all(c.strip() == "" for c in cells):
            continue
        if header is None:
            header, header_line = [c.strip() for c in cells], record.line
            problems.extend(_duplicate_columns(header, name, header_line))
            continue
        body.append(record)
    if header is None:
        return _Raw(None, [], problems)
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
        cells = cells + [""] * (len(header) - len(cells))
        records.append((record.line, dict(zip(header, cells))))
    return _Raw(header, records, problems)


def _duplicate_columns(header: list[str], name: str, line: int) -> list[Problem]:
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
MAX_JSON_DIGITS = 100
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


class _JsonLimit(ValueError):
    pass


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_JSON_DIGITS:
        raise _JsonLimit(f"a number with {digits} digits; at most {MAX_JSON_DIGITS} are accepted")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _JsonLimit(
            f"key {shown(repeated)} appears twice in one object; the first value would be lost",
            json.dumps(repeated, ensure_ascii=False),
        )
    return obj


def _json_depth_column(line: str) -> int | None:
    """The column where ``line`` nests deeper than MAX_JSON_DEPTH, if it does (strings skipped)."""
    if line.count("[") + line.count("{") <= MAX_JSON_DEPTH:
        return None
    blanked = _JSON_STRING.sub(lambda m: " " * len(m.group()), line)
    depth = 0
    for match in re.finditer(r"[\[\]{}]", blanked):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return match.start() + 1
    return None


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _read_jsonl(text: str, name: str) -> _Raw:
    problems: list[Problem] = []
    records: list[tuple[int, dict[str, Any]]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(_BREAK.split(text), start=1):
        if not line.strip():
            continue
        deep = _json_depth_column(line)
        if deep is not None:
            problems.append(Problem(name, number, str(deep), f"JSON nested more than {MAX_JSON_DEPTH} levels deep"))
            continue
        try:
            obj = json.loads(line, parse_int=_bounded_int, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            problems.append(Problem(name, number, str(err.colno), f"invalid JSON: {err.msg}"))
            continue
        except _JsonLimit as err:
            if len(err.args) > 1:  # a repeated key: point at its second use
                first = line.find(err.args[1])
                where = line.find(err.args[1], first + 1) if first >= 0 else -1
            else:
                long_number = re.search(
                    rf"\d{{{MAX_JSON_DIGITS + 1},}}", _JSON_STRING.sub(lambda m: " " * len(m.group()), line)
                )
                where = long_number.start() if long_number else -1
            problems.append(Problem(name, number, str(where + 1) if where >= 0 else None, err.args[0]))
            continue
        except (ValueError, RecursionError) as err:  # numbers or nesting beyond Python's limits
            problems.append(Problem(name, number, None, f"invalid JSON: {shown(str(err), 60)}"))
            continue
        if _has_surrogate(obj):
            where = _LONE_SURROGATE.search(line)
            problems.append(
                Problem(
                    name,
                    number,
                    str(where.start() + 1) if where else None,
                    f"{where.group() if where else 'a string'} is half of a UTF-16 surrogate pair, not a character; "
                    "write the character itself or both halves of the pair",
                )
            )
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(name, number, None, f"expected a JSON object per line, got {type(obj).__name__}"))
            continue
        columns.update(dict.fromkeys(obj))
        records.append((number, obj))
    return _Raw(list(columns), records, problems)


def _read_txt(text: str, name: str) -> _Raw:
    records = [(number, {"prompt": line}) for number, line in enumerate(_BREAK.split(text), start=1) if line.strip()]
    return _Raw(["prompt"], records, [])


def _read_parquet(source: Path | bytes, name: str) -> _Raw:
    """Parquet through pyarrow directly, single-threaded, into plain Python values: nested
    (struct, list, map) columns become dicts and lists without going through pandas object
    columns, and dates, decimals and binary values become text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(source) if isinstance(source, bytes) else source, use_threads=False)
        header = [str(c) for c in table.column_names]
        rows = table.to_pylist()
    except Exception as err:  # pyarrow raises several types for a bad file
        raise ManifestError(
            [Problem(name, None, None, f"cannot read as Parquet: {shown(str(err), 200)}", fatal=True)]
        ) from None
    problems = _duplicate_columns(header, name, 1) if len(set(header)) != len(header) else []
    records = [(number, {str(k): _plain(v) for k, v in rec.items()}) for number, rec in enumerate(rows, start=1)]
    return _Raw(header, records, problems)


def _plain(value: Any, depth: int = 0) -> Any:
    """A Parquet value as JSON-able Python: nested containers walked (bounded), the rest as text."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if depth > MAX_JSON_DEPTH:
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(p, tuple) and len(p) == 2 for p in value):  # a map column
            return {str(k): _plain(v, depth + 1) for k, v in value}
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def detect_format(name: str, sample: bytes) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if name in ("-", "<stdin>"):
        first = sample.lstrip(b"\xef\xbb\xbf \r\n\t").split(b"\n", 1)[0]
        if first.startswith(b"{"):
            return "jsonl"
        if first.startswith(b"PAR1"):
            return "parquet"
        if b"\t" in first:
            return "tsv"
        if b"," in first:
            return "csv"
        return "txt"
    raise GenbatchError(
        f"{name}: cannot tell the manifest format from the extension {suffix or '(none)'}; "
        f"use --format {'|'.join(FORMATS)}"
    )


def display_name(path: str) -> str:
    """A manifest's path as messages and the ledger show it: a file name that is not valid
    UTF-8 (its bytes arrive as surrogates) or holds control characters is escaped."""
    return "<stdin>" if path == "-" else shown_bare(path, limit=4096)


def _read_raw(path: str, fmt: str | None) -> tuple[str, _Raw]:
    name = display_name(path)
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        file = Path(path)
        if not file.is_file():
            raise GenbatchError(f"{name}: no such file")
        try:
            data = file.read_bytes()
        except OSError as err:
            raise GenbatchError(f"{name}: cannot read the file: {err.strerror}") from None
    given = fmt  # a .txt file is read as A1111 lines unless --format txt says otherwise
    fmt = (fmt or detect_format(name, data[:4096])).lower()
    if fmt not in FORMATS:
        raise GenbatchError(f"unknown format {shown(fmt)}; expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        return fmt, _read_parquet(data, name)
    text = _decode(data, name)
    if fmt == "csv":
        return fmt, _read_delimited(text, name, ",")
    if fmt == "tsv":
        return fmt, _read_delimited(text, name, "\t")
    if fmt == "jsonl":
        return fmt, _read_jsonl(text, name)
    if fmt == "a1111" or (fmt == "txt" and given is None and is_prompt_file(text)):  # genbatch.a1111
        found = read_prompt_file(text, name)
        return "a1111", _Raw(found.header, found.records, found.problems, found.warnings)
    return fmt, _read_txt(text, name)


# --- mapping columns onto fields and validating ------------------------------------------


def _map_columns(
    header: list[str], column_map: dict[str, str], name: str
) -> tuple[dict[str, str], list[Problem], list[str]]:
    """Decide which file column feeds each field. Returns (field->column, problems, warnings)."""
    problems: list[Problem] = []
    warnings: list[str] = []
    by_norm: dict[str, str] = {}
    for column in header:
        by_norm.setdefault(normalise_column(column), column)
    mapping: dict[str, str] = {}
    for field_name, column in column_map.items():
        found = column if column in header else by_norm.get(normalise_column(column))
        if found is None:
            problems.append(
                Problem(
                    name,
                    None,
                    None,
                    f"--column {field_name}={shown_bare(column)}: no column {shown(column)}; the columns are "
                    + ", ".join(shown(c) for c in header[:50]),
                    fatal=True,
                )
            )
        else:
            mapping[field_name] = found
    for field_name, aliases in ALIASES.items():
        if field_name in mapping or field_name in column_map:
            continue
        for alias in aliases:
            if alias in by_norm:
                mapping[field_name] = by_norm[alias]
                break
    used = set(mapping.values())
    for column in header:
        if column in used:
            continue
        norm = normalise_column(column)
        if norm in _NEAR_MISS_TARGETS:
            target = _NEAR_MISS_TARGETS[norm]
            warnings.append(
                f"{name}: column {shown(column)} is not used: {target!r} is already read from "
                f"{shown(mapping.get(target, '?'))}"
            )
            continue
        close = difflib.get_close_matches(norm, list(_NEAR_MISS_TARGETS), n=1, cutoff=0.75)
        if close:
            target = _NEAR_MISS_TARGETS[close[0]]
            if target not in mapping:
                warnings.append(
                    f"{name}: column {shown(column)} is not a known field; did you mean {target!r}? "
                    f"(use --column {target}={shown_bare(column)} to read it as {target}; it is kept in the metadata)"
                )
    if "prompt" not in mapping and not any(p.message.startswith("--column prompt=") for p in problems):
        problems.append(
            Problem(
                name,
                1,
                None,
                "no prompt column; the columns are "
                + (", ".join(shown(c) for c in header[:50]) if header else "(none)")
                + f"; expected one of {', '.join(ALIASES['prompt'])} (any case) or --prompt-column NAME",
                fatal=True,
            )
        )
    return mapping, problems, warnings


def read_manifest(
    path: str | Path,
    *,
    format: str | None = None,
    column_map: dict[str, str] | None = None,
    overrides: dict[str, str] | None = None,
    max_images_per_row: int = MAX_IMAGES_PER_ROW,
) -> Manifest:
    """Read and validate a manifest. Problems are returned, not raised, so that callers
    can report all of them (``validate``) or skip bad rows (``run --skip-invalid``).
    A file that cannot be read at all raises :class:`ManifestError`. A row may ask for at
    most ``max_images_per_row`` images (``--max-images-per-row``)."""
    path = str(path)
    fmt, raw = _read_raw(path, format)
    name = display_name(path)
    mapping, problems, warnings = _map_columns(raw.header or [], column_map or {}, name)
    # a file none of whose lines could be read has no columns: say why, not "no prompt column"
    problems = raw.problems + ([] if raw.problems and not raw.header else problems)
    warnings = raw.warnings + warnings

    forced: dict[str, Any] = {}
    for field_name, value in (overrides or {}).items():
        try:
            forced[field_name] = parse_value(field_name, value)
            check_images_per_row(forced.get("num_images"), max_images_per_row)
        except ValueError as err:
            problems.append(Problem("--set", None, field_name, str(err), fatal=True))

    if "prompt" not in mapping:
        return Manifest(name, fmt, [], problems, [], warnings, mapping)

    rows: list[Row] = []
    skipped: list[SkippedRow] = [
        SkippedRow(p.line, None, [str(p)], {}) for p in raw.problems if not p.fatal and p.line is not None
    ]
    ids_seen: dict[str, int] = {}
    for index, (line, record) in enumerate(raw.records):
        values: dict[str, Any] = {}
        row_problems: list[Problem] = []
        for field_name, column in mapping.items():
            if field_name in forced:  # --set wins; the file's value is kept in fields only
                continue
            cell = record.get(column)
            if _is_missing(cell):
                if field_name == "prompt":
                    row_problems.append(Problem(name, line, column, "the prompt is empty"))
                continue
            try:
                values[field_name] = parse_value(field_name, cell)
                if field_name == "num_images":
                    check_images_per_row(values[field_name], max_images_per_row)
            except ValueError as err:
                row_problems.append(Problem(name, line, column, str(err)))
        values.update(forced)
        row_id = values.get("id")
        if row_id is not None:
            if row_id in ids_seen:
                row_problems.append(
                    Problem(name, line, mapping["id"], f"id {shown(row_id)} is already used on line {ids_seen[row_id]}")
                )
            else:
                ids_seen[row_id] = line
        if row_problems:
            problems.extend(row_problems)
            prompt = record.get(mapping["prompt"])
            skipped.append(
                SkippedRow(line, prompt if isinstance(prompt, str) else None, [str(p) for p in row_problems], record)
            )
            continue
        rows.append(Row(index, line, record, **values))
    return Manifest(name, fmt, rows, problems, skipped, warnings, mapping)
