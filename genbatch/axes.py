"""``--vary FIELD=V1,V2,...``: every manifest row once for each combination of the axes' values.

``genbatch run prompts.csv --vary steps=20,30 --vary lora=a:0.5,a:1.0`` runs each row four
times, the product of the axes, as AUTOMATIC1111's X/Y/Z plot does; ``genbatch grid`` then
lays the images out by any two of the fields. An axis is any field a manifest row can set
(see genbatch.fields), named by its name or a column alias; its values are parsed by the
field's own rules. A value that holds a comma is quoted, as in CSV: ``--vary 'prompt="a, b",c'``.
An axis value wins over the row's own value. The varied copies of a row keep its line and
its seed (unless ``seed`` is an axis), so the images differ only by the axes.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from typing import Any

from .errors import GenbatchError
from .fields import ALIASES, BY_NAME, ROW_FIELDS
from .manifest import Row, normalise_column, parse_value

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


def parse_axes(items: list[str] | None, overrides: dict[str, Any] | None = None) -> list[Axis]:
    """``--vary`` options -> axes; a bad one raises GenbatchError saying what is accepted."""
    axes: list[Axis] = []
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
        if any(axis.field == field for axis in axes):
            raise GenbatchError(f"--vary {item!r}: {field} is already an axis; give all its values in one --vary")
        if overrides and field in overrides:
            raise GenbatchError(f"--vary {item!r}: --set {field}=... gives every row one {field}; use one of the two")
        texts = tuple(v.strip() for v in next(csv.reader([text.strip()], skipinitialspace=True)))
        values = []
        for value in texts:
            try:
                values.append(parse_value(field, value))
            except ValueError as err:
                raise GenbatchError(f"--vary {item!r}: {err}; expected {BY_NAME[field].accepted}") from None
        repeated = next((t for t, v in zip(texts, values) if values.count(v) > 1), None)
        if repeated is not None:
            raise GenbatchError(f"--vary {item!r}: the value {repeated!r} is given twice")
        axes.append(Axis(field, tuple(values), texts))
    return axes


def apply_axes(rows: list[Row], axes: list[Axis]) -> list[Row]:
    """Each row once per combination of the axes' values (the first axis outermost)."""
    if not axes:
        return rows
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
