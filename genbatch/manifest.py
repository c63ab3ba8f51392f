"""Read a manifest of prompts (CSV, TSV, JSONL, plain text, Parquet) into validated rows.

Every problem is collected, not just the first, and located as ``FILE:LINE:COLUMN`` where
LINE is the physical line on which the row starts (for Parquet: the 1-based row number).

CSV and TSV are read with the standard library's ``csv`` module rather than pandas because
pandas does not report the physical line a row starts on, and users need that line to fix a
30,000-row file. Parquet, which has no lines, is read with pandas/pyarrow.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .a1111 import is_prompt_file, read_prompt_file
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
        raise _Invalid(f"{value!r} is not a valid {what}; expected {accepted}")
    if number < lo or (hi is not None and number > hi) or number % multiple_of:
        raise _Invalid(f"{what} {number} is out of range; expected {accepted}")
    return number


def _as_float(value: Any, what: str, lo: float) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise _Invalid(f"{value!r} is not a valid {what}; expected a number >= {lo:g}") from None
    if not math.isfinite(number) or number < lo:
        raise _Invalid(f"{what} {number:g} is out of range; expected a number >= {lo:g}")
    return number


def _as_text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Invalid(f"{value!r} is not valid text for {what}")
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


def parse_value(name: str, value: Any) -> Any:
    """Parse one field's value, raising ValueError with a message that says what is accepted."""
    spec = BY_NAME[name]
    if spec.kind == "int":
        return _as_int(value, name, int(spec.lo), spec.hi, spec.multiple_of)
    if spec.kind == "float":
        return _as_float(value, name, spec.lo)
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
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ManifestError(
            [
                Problem(
                    name,
                    line,
                    str(column),
                    f"byte 0x{data[err.start]:02x} is not valid UTF-8; save the file as UTF-8 "
                    "(with or without BOM)",
                    fatal=True,
                )
            ]
        ) from None


def _read_delimited(text: str, name: str, delimiter: str) -> _Raw:
    csv.field_size_limit(2**31 - 1)
    if delimiter == "\t":
        # TSV is not quoted: a prompt that begins with a double quote keeps it.
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    problems: list[Problem] = []
    records: list[tuple[int, dict[str, Any]]] = []
    header: list[str] | None = None
    header_line = 0
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            problems.append(
                Problem(name, start, None, f"cannot parse this row ({err}); check its quotes", fatal=True)
            )
            break
        if not cells or all(c.strip() == "" for c in cells):
            continue
        if header is None:
            header, header_line = [c.strip() for c in cells], start
            continue
        if len(cells) > len(header):
            sep = "tab" if delimiter == "\t" else "comma"
            problems.append(
                Problem(
                    name,
                    start,
                    None,
                    f"row has {len(cells)} fields but the header (line {header_line}) has {len(header)}; "
                    f"quote fields that contain a {sep}" if delimiter != "\t" else
                    f"row has {len(cells)} fields but the header (line {header_line}) has {len(header)}; "
                    "a prompt cannot contain a tab in TSV",
                )
            )
            continue
        cells = cells + [""] * (len(header) - len(cells))
        records.append((start, dict(zip(header, cells))))
    return _Raw(header, records, problems)


def _read_jsonl(text: str, name: str) -> _Raw:
    problems: list[Problem] = []
    records: list[tuple[int, dict[str, Any]]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(io.StringIO(text, newline=None), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(Problem(name, number, str(err.colno), f"invalid JSON: {err.msg}"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(name, number, None, f"expected a JSON object per line, got {type(obj).__name__}"))
            continue
        columns.update(dict.fromkeys(obj))
        records.append((number, obj))
    return _Raw(list(columns), records, problems)


def _read_txt(text: str, name: str) -> _Raw:
    records = [
        (number, {"prompt": line})
        for number, line in enumerate(io.StringIO(text, newline=None), start=1)
        if line.strip()
    ]
    return _Raw(["prompt"], records, [])


def _read_parquet(source: Path | bytes, name: str) -> _Raw:
    import pandas as pd

    try:
        frame = pd.read_parquet(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise ManifestError([Problem(name, None, None, f"cannot read as Parquet: {err}", fatal=True)]) from None
    frame = frame.astype(object).where(frame.notna(), None)
    records = [
        (number, {str(k): _plain(v) for k, v in rec.items()})
        for number, rec in enumerate(frame.to_dict("records"), start=1)
    ]
    return _Raw([str(c) for c in frame.columns], records, [])


def _plain(value: Any) -> Any:
    """numpy scalars and arrays to plain Python, so they serialise as JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def detect_format(name: str, sample: bytes) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if name == "-":
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


def _read_raw(path: str, format: str | None) -> tuple[str, _Raw]:
    if path == "-":
        data = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        file = Path(path)
        if not file.is_file():
            raise GenbatchError(f"{path}: no such file")
        data = file.read_bytes()
        name = path
    fmt = (format or detect_format(path, data[:4096])).lower()
    if fmt not in FORMATS:
        raise GenbatchError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        return fmt, _read_parquet(data, name)
    text = _decode(data, name)
    if fmt == "csv":
        return fmt, _read_delimited(text, name, ",")
    if fmt == "tsv":
        return fmt, _read_delimited(text, name, "\t")
    if fmt == "jsonl":
        return fmt, _read_jsonl(text, name)
    if fmt == "a1111" or (fmt == "txt" and format is None and is_prompt_file(text)):  # genbatch.a1111
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
                    f"--column {field_name}={column}: no column {column!r}; the columns are "
                    + ", ".join(repr(c) for c in header),
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
                f"{name}: column {column!r} is not used: {target!r} is already read from "
                f"{mapping.get(target, '?')!r}"
            )
            continue
        close = difflib.get_close_matches(norm, list(_NEAR_MISS_TARGETS), n=1, cutoff=0.75)
        if close:
            target = _NEAR_MISS_TARGETS[close[0]]
            if target not in mapping:
                warnings.append(
                    f"{name}: column {column!r} is not a known field; did you mean {target!r}? "
                    f"(use --column {target}={column} to read it as {target}; it is kept in the metadata)"
                )
    if "prompt" not in mapping and not any(p.message.startswith("--column prompt=") for p in problems):
        problems.append(
            Problem(
                name,
                1,
                None,
                "no prompt column; the columns are "
                + (", ".join(repr(c) for c in header) if header else "(none)")
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
) -> Manifest:
    """Read and validate a manifest. Problems are returned, not raised, so that callers
    can report all of them (``validate``) or skip bad rows (``run --skip-invalid``).
    A file that cannot be read at all raises :class:`ManifestError`."""
    path = str(path)
    fmt, raw = _read_raw(path, format)
    name = "<stdin>" if path == "-" else path
    mapping, problems, warnings = _map_columns(raw.header or [], column_map or {}, name)
    problems, warnings = raw.problems + problems, raw.warnings + warnings

    forced: dict[str, Any] = {}
    for field_name, value in (overrides or {}).items():
        try:
            forced[field_name] = parse_value(field_name, value)
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
            value = record.get(column)
            if _is_missing(value):
                if field_name == "prompt":
                    row_problems.append(Problem(name, line, column, "the prompt is empty"))
                continue
            try:
                values[field_name] = parse_value(field_name, value)
            except ValueError as err:
                row_problems.append(Problem(name, line, column, str(err)))
        values.update(forced)
        row_id = values.get("id")
        if row_id is not None:
            if row_id in ids_seen:
                row_problems.append(
                    Problem(name, line, mapping["id"], f"id {row_id!r} is already used on line {ids_seen[row_id]}")
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

