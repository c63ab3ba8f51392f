"""Read a manifest of prompts (CSV, TSV, JSONL, plain text, Parquet) into validated rows.

Every problem is collected, not just the first, and located as ``FILE:LINE:COLUMN`` where
LINE is the physical line on which the row starts (for Parquet: the 1-based row number).

Each format has its reader: CSV and TSV in genbatch.manifest.csv_reader (exact: a stray quote never
merges rows) or, where the bytes show it reads the same cells, genbatch.manifest.csv_fast (pyarrow);
JSONL, Parquet and plain text in genbatch.manifest.jsonl_parquet_text. Columns are matched to fields in
genbatch.manifest.columns and each field's column is parsed at once (genbatch.manifest.values).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbatch.bucket import is_url, read_object
from genbatch.bulk import paused_gc
from genbatch.echo import shown, shown_bare
from genbatch.errors import GenbatchError, Problem
from genbatch.manifest.a1111 import is_prompt_file, read_prompt_file
from genbatch.manifest.columns import map_columns
from genbatch.manifest.columns import normalise_column as normalise_column
from genbatch.manifest.csv_fast import read_quote_free
from genbatch.manifest.csv_reader import read_delimited
from genbatch.manifest.fields import ROW_FIELDS, Values
from genbatch.manifest.inputs import check_inputs
from genbatch.manifest.jsonl_parquet_text import read_jsonl, read_parquet, read_txt
from genbatch.manifest.raw import Raw, decode
from genbatch.manifest.values import MAX_IMAGES_PER_ROW as MAX_IMAGES_PER_ROW
from genbatch.manifest.values import UNSET, check_images_per_row, parse_column
from genbatch.manifest.values import parse_value as parse_value

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

# A field genbatch understands, and the column names (compared case-insensitively, with
# spaces and dashes read as underscores) that mean it: see genbatch.manifest.fields.
FIELDS = ROW_FIELDS
_ROW_FIELD_SET = frozenset(ROW_FIELDS)


class Row(Values):
    """One valid manifest row: its generation fields in ``values`` (``None``: not given here,
    a default applies later), readable as attributes (``row.seed``), and the row's own
    columns, untouched, in ``fields``. The columns' names are held once per file, not once
    per row (``columns``, shared, and this row's ``cells``)."""

    __slots__ = ("index", "line", "columns", "cells", "values")
    index: int
    line: int
    columns: tuple[str, ...]
    cells: tuple[Any, ...]

    def __init__(self, index: int, line: int, fields: dict[str, Any] | None = None, **values: Any):
        if not _ROW_FIELD_SET.issuperset(values):
            raise TypeError(f"Row has no field {', '.join(sorted(set(values) - _ROW_FIELD_SET))}")
        self.index, self.line = index, line
        self.columns, self.cells = tuple(fields or ()), tuple((fields or {}).values())
        self.values = values  # only the fields given; the others read as None

    @classmethod
    def of(cls, index: int, line: int, columns: tuple[str, ...], cells: tuple[Any, ...], values: dict[str, Any]) -> Row:
        """A row from parsed values (fields of ROW_FIELDS only), as a reader gives them."""
        row = cls.__new__(cls)
        row.index, row.line, row.columns, row.cells, row.values = index, line, columns, cells, values
        return row

    @property
    def fields(self) -> dict[str, Any]:
        return dict(zip(self.columns, self.cells))

    @property
    def model(self) -> str | None:
        """The row's model column (None: the run's --model); a property of its own, as every
        other field is one on Values, since planning reads it a few times per row."""
        return self.values.get("model")

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


def _read_raw(path: str, fmt: str | None, max_images_per_row: int) -> tuple[str, Raw]:
    name = display_name(path)
    if path == "-":
        data = sys.stdin.buffer.read()
    elif is_url(path):
        data = read_object(path)
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
        return fmt, read_parquet(data, name)
    text = decode(data, name)
    if fmt in ("csv", "tsv"):
        delimiter = "," if fmt == "csv" else "\t"
        return fmt, read_quote_free(data, text, delimiter) or read_delimited(text, name, delimiter)
    if fmt == "jsonl":
        return fmt, read_jsonl(text, name)
    if fmt == "a1111" or (fmt == "txt" and given is None and is_prompt_file(text)):  # genbatch.manifest.a1111
        found = read_prompt_file(text, name, max_images_per_row)
        return "a1111", Raw(found.header, found.records, found.problems, found.warnings)
    return fmt, read_txt(text, name)


# --- validating rows ----------------------------------------------------------------------


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
    with paused_gc():
        fmt, raw = _read_raw(path, format, max_images_per_row)
        return manifest_of(
            raw,
            fmt,
            display_name(path),
            path,
            column_map=column_map,
            overrides=overrides,
            max_images_per_row=max_images_per_row,
        )


def manifest_of(
    raw: Raw,
    fmt: str,
    name: str,
    path: str,
    *,
    column_map: dict[str, str] | None = None,
    overrides: dict[str, str] | None = None,
    max_images_per_row: int = MAX_IMAGES_PER_ROW,
    folder: str | None = None,
) -> Manifest:
    """The validated manifest of a reader's records (``raw``), named ``name`` in its problems;
    its input files are read from the folder of the manifest at ``path``, or from ``folder``."""
    with paused_gc():
        mapping, problems, warnings = map_columns(raw.header or [], column_map or {}, name)
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
        skipped: list[SkippedRow] = [
            SkippedRow(p.line, None, [str(p)], {}) for p in raw.problems if not p.fatal and p.line is not None
        ]
        rows = _valid_rows(_Table.of(raw), name, mapping, forced, max_images_per_row, problems, skipped)
        # the files rows start from (genbatch.manifest.inputs)
        bad = check_inputs(rows, name, path, mapping, problems, folder)
        if bad:
            skipped.extend(_skipped(row, mapping, [p for p in problems if p.line == row.line]) for row in bad)
            skipped.sort(key=lambda s: s.line if s.line is not None else 0)
            dropped = {id(row) for row in bad}
            rows = [row for row in rows if id(row) not in dropped]
    return Manifest(name, fmt, rows, problems, skipped, warnings, mapping)


def _skipped(row: Row, mapping: dict[str, str], found: list[Problem]) -> SkippedRow:
    record = dict(zip(row.columns, row.cells))
    prompt = record.get(mapping["prompt"])
    return SkippedRow(row.line, prompt if isinstance(prompt, str) else None, [str(p) for p in found], record)


@dataclass
class _Table:
    """A reader's records as columns: each record's line, its cells, and its column names
    (one tuple for a whole CSV; a JSONL line's own keys)."""

    lines: Sequence[int]
    column: dict[str, Sequence[Any]]  # a column's cells by its name
    names: Iterable[tuple[str, ...]]  # each record's column names
    cells: Sequence[tuple[Any, ...]]  # each record's cells, in the order of its names

    @classmethod
    def of(cls, raw: Raw) -> _Table:
        if raw.columns is not None and raw.lines is not None:
            header = tuple(raw.header or ())
            columns = [_shared(column) for column in raw.columns]
            cells = list(zip(*columns)) if columns else [()] * len(raw.lines)
            # a repeated column name (a fatal problem) reads as its last column, as a dict would
            return cls(raw.lines, dict(zip(header, columns)), itertools.repeat(header, len(cells)), cells)
        names = {name for _, record in raw.records for name in record}
        return cls(
            [line for line, _ in raw.records],
            {name: [record.get(name) for _, record in raw.records] for name in names},
            [tuple(record) for _, record in raw.records],
            [tuple(record.values()) for _, record in raw.records],
        )


def _shared(column: Sequence[Any]) -> Sequence[Any]:
    """A column whose cells take few values (steps, a style) with one string per value, not
    one per row: a million rows hold a few distinct strings instead of a million copies."""
    if len(set(column[:1000])) > 100:
        return column
    one: dict[Any, Any] = {}
    return [one.setdefault(cell, cell) for cell in column]


def _valid_rows(
    table: _Table,
    name: str,
    mapping: dict[str, str],
    forced: dict[str, Any],
    max_images: int,
    problems: list[Problem],
    skipped: list[SkippedRow],
) -> list[Row]:
    """The rows all of whose cells are valid; the others' problems go to ``problems`` (in
    row order, then in field order) and the rows to ``skipped``."""
    fields = [(field, column) for field, column in mapping.items() if field not in forced]  # --set wins
    parsed: list[list[Any]] = []
    errors: dict[int, list[Problem]] = {}
    for field, column in fields:
        column_values, bad = parse_column(field, table.column.get(column, [None] * len(table.lines)), max_images)
        parsed.append(column_values)
        for i, message in bad.items():
            errors.setdefault(i, []).append(Problem(name, table.lines[i], column, message))
    names = [field for field, _ in fields]
    rows: list[Row] = []
    ids_seen: dict[str, int] = {}
    each_row = zip(*parsed) if parsed else itertools.repeat((), len(table.lines))
    for i, (line, found, columns, cells) in enumerate(zip(table.lines, each_row, table.names, table.cells)):
        values = {field: value for field, value in zip(names, found) if value is not UNSET}
        if forced:
            values.update(forced)
        row_problems = errors.get(i)
        row_id = values.get("id")
        if row_id is not None:
            if row_id in ids_seen:
                where = mapping.get("id", "id")
                used = Problem(name, line, where, f"id {shown(row_id)} is already used on line {ids_seen[row_id]}")
                row_problems = [*(row_problems or []), used]
            else:
                ids_seen[row_id] = line
        if row_problems:
            problems.extend(row_problems)
            record = dict(zip(columns, cells))
            prompt = record.get(mapping["prompt"])
            skipped.append(
                SkippedRow(line, prompt if isinstance(prompt, str) else None, [str(p) for p in row_problems], record)
            )
            continue
        rows.append(Row.of(i, line, columns, cells, values))
    return rows
