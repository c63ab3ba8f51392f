"""``--vary FIELD=V1,V2,...``: every manifest row once for each combination of the axes' values.

``genbatch run prompts.csv --vary steps=20,30 --vary lora=a:0.5,a:1.0`` runs each row four
times, the product of the axes, as AUTOMATIC1111's X/Y/Z plot does; ``genbatch grid`` then
lays the images out by any two of the fields. An axis is any field a manifest row can set
(see genbatch.manifest.fields), named by its name or a column alias; its values are parsed by the
field's own rules. A value that holds a comma is quoted, as in CSV: ``--vary 'prompt="a, b",c'``.
An axis value wins over the row's own value. The varied copies of a row keep its line and
its seed (unless ``seed`` is an axis), so the images differ only by the axes. The axes may
give a row at most :data:`MAX_COMBINATIONS` combinations (10,000) unless the caller raises it.
"""

from __future__ import annotations

import collections
import csv
import itertools
import math
from dataclasses import dataclass
from typing import Any

from genbatch.errors import GenbatchError
from genbatch.manifest.fields import ALIASES, ROW_FIELDS
from genbatch.manifest.read import MAX_IMAGES_PER_ROW, Row, normalise_column, parse_value

# The combinations of values the axes may give each row unless the caller allows more: the
# images-per-row limit (--max-images-per-row), since each combination is at least one image
# of the row. Three axes of 100 values are a million jobs per row; four do not fit in memory.
MAX_COMBINATIONS = MAX_IMAGES_PER_ROW

# Names an A1111 user reaches for that are run options here, with what to do instead.
_NOT_AXES = {
    "scheduler": "the scheduler is a run option (--scheduler), one per run: run once per scheduler into its own "
    '--out, or into one --out with --name-template "{index:06d}-{key}.{ext}"',
    "id": "an id names one row; it cannot vary",
}
_NOT_AXES["sampler"] = _NOT_AXES["scheduler"]


@dataclass(frozen=True)
class Axis:
    field: str  # the field's name (steps, guidance_scale, lora...)
    values: tuple[Any, ...]  # parsed by the field's own rules
    texts: tuple[str, ...]  # as written


def field_name(name: str) -> str | None:
    """A field's name from its name or any of its column aliases (any case)."""
    norm = normalise_column(name)
    if norm in ROW_FIELDS:
        return norm
    return next((field for field, aliases in ALIASES.items() if norm in aliases), None)


def parse_axes(
    items: list[str] | None, overrides: dict[str, Any] | None = None, max_combinations: int = MAX_COMBINATIONS
) -> list[Axis]:
    """``--vary`` options -> axes; a bad one raises GenbatchError saying what is accepted. The
    axes may give each row at most ``max_combinations`` combinations of values (checked
    before any value is parsed)."""
    given: list[tuple[str, str, tuple[str, ...]]] = []  # (option, field, the values as written)
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise GenbatchError(f"--vary {item!r}: expected FIELD=VALUE,VALUE,..., e.g. --vary steps=20,30")
        norm = normalise_column(name)
        if norm in _NOT_AXES:
            raise GenbatchError(f"--vary {item!r}: {_NOT_AXES[norm]}")
        field = field_name(name)
        if field is None or field == "id":
            known = ", ".join(f for f in ROW_FIELDS if f != "id")
            raise GenbatchError(f"--vary {item!r}: unknown field {name.strip()!r}; fields that can vary: {known}")
        if any(other == field for _, other, _ in given):
            raise GenbatchError(f"--vary {item!r}: {field} is already an axis; give all its values in one --vary")
        if overrides and field in overrides:
            raise GenbatchError(f"--vary {item!r}: --set {field}=... gives every row one {field}; use one of the two")
        given.append((item, field, tuple(v.strip() for v in next(csv.reader([text.strip()], skipinitialspace=True)))))
    check_combinations([(field, len(texts)) for _, field, texts in given], max_combinations)
    axes: list[Axis] = []
    for item, field, texts in given:
        values = []
        for value in texts:
            try:
                values.append(parse_value(field, value))
            except ValueError as err:  # its message says what is accepted
                raise GenbatchError(f"--vary {item!r}: {err}") from None
        repeated = _repeated(texts, values)
        if repeated is not None:
            raise GenbatchError(f"--vary {item!r}: the value {repeated!r} is given twice")
        axes.append(Axis(field, tuple(values), texts))
    return axes


def check_combinations(counts: list[tuple[str, int]], limit: int = MAX_COMBINATIONS) -> None:
    """Raise GenbatchError if axes of these (field, number of values) give a row more than
    ``limit`` combinations: each one is a job (or num_images jobs) for every row."""
    combinations = math.prod(count for _, count in counts)
    if combinations > limit:
        axes = " x ".join(f"{field} ({count} values)" for field, count in counts)
        raise GenbatchError(
            f"--vary: {axes} make {combinations:,} combinations for each row, over the limit of {limit:,}; "
            "give fewer values, or pass --max-images-per-row N to allow more"
        )


def _repeated(texts: tuple[str, ...], values: list[Any]) -> str | None:
    """The first value as written whose parsed value is given more than once, or None."""
    try:
        counts = collections.Counter(values)
    except TypeError:  # a value that cannot be hashed: compare them all
        return next((t for t, v in zip(texts, values) if values.count(v) > 1), None)
    return next((t for t, v in zip(texts, values) if counts[v] > 1), None)


def apply_axes(rows: list[Row], axes: list[Axis], max_combinations: int = MAX_COMBINATIONS) -> list[Row]:
    """Each row once per combination of the axes' values (the first axis outermost); more
    than ``max_combinations`` combinations raise GenbatchError before any row is made."""
    if not axes:
        return rows
    check_combinations([(axis.field, len(axis.values)) for axis in axes], max_combinations)
    fields = [axis.field for axis in axes]
    varied = []
    for row in rows:
        for combination in itertools.product(*(axis.values for axis in axes)):
            values = dict(row.values)
            values.update(zip(fields, combination))
            varied.append(Row(row.index, row.line, row.fields, **values))
    return varied


def describe(axes: list[Axis]) -> list[dict[str, Any]]:
    """The axes as run.json records them."""
    return [{"field": axis.field, "values": list(axis.texts)} for axis in axes]
