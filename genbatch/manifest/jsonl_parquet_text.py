"""JSONL, Parquet and plain-text manifests, read with the checks hostile input needs: integers
of bounded length, bounded nesting, no repeated keys, no lone UTF-16 surrogates."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from genbatch.echo import shown
from genbatch.errors import ManifestError, Problem
from genbatch.manifest.raw import BREAK, Raw, duplicate_columns

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


def read_jsonl(text: str, name: str) -> Raw:
    problems: list[Problem] = []
    records: list[tuple[int, dict[str, Any]]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(BREAK.split(text), start=1):
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
    return Raw(list(columns), records, problems)


def read_txt(text: str, name: str) -> Raw:
    records = [(number, {"prompt": line}) for number, line in enumerate(BREAK.split(text), start=1) if line.strip()]
    return Raw(["prompt"], records, [])


def read_parquet(source: Path | bytes, name: str) -> Raw:
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
    problems = duplicate_columns(header, name, 1) if len(set(header)) != len(header) else []
    records = [(number, {str(k): _plain(v) for k, v in rec.items()}) for number, rec in enumerate(rows, start=1)]
    return Raw(header, records, problems)


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
