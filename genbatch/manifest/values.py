"""Manifest values: each generation field's cell parsed by that field's rules (genbatch.manifest.fields),
one value at a time (:func:`parse_value`, whose messages say what is accepted) or a whole
column at a time (:func:`parse_column`, the same results with the common cases done inline).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from genbatch.echo import shown, shown_bare
from genbatch.manifest.fields import BY_NAME, Field
from genbatch.pipelines.samplers import parse_scheduler


class _Invalid(ValueError):
    pass


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _as_int(value: Any, spec: Field) -> int:
    what = spec.name
    number: int | None = None
    written: str | None = None  # the text of a number written as a float ("1e30"), to show as given
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
                written = shown_bare(text, 40)
            except (ValueError, OverflowError):
                number = None
    if number is None:
        raise _Invalid(f"{shown(value)} is not a valid {what}; expected {spec.accepted}")
    if not spec.in_range(number):
        raise _Invalid(f"{what} {written or shown(number)} is out of range; expected {spec.accepted}")
    return number


def _as_float(value: Any, spec: Field) -> float:
    what = spec.name
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise _Invalid(f"{shown(value)} is not a valid {what}; expected {spec.accepted}") from None
    if not math.isfinite(number) or not spec.in_range(number):
        raise _Invalid(f"{what} {number:g} is out of range; expected {spec.accepted}")
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
    # a file's path (or URL) as the row gives it; genbatch.manifest.inputs reads and checks the file
    "image": lambda v, what: _as_text(v, what).strip() or None,
}


# The most images one row may ask for unless --max-images-per-row raises it.
MAX_IMAGES_PER_ROW = 10_000


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
        return _as_int(value, spec)
    if spec.kind == "float":
        return _as_float(value, spec)
    if spec.kind == "choice":
        text = _as_text(value, name).lower()
        if text not in spec.choices:
            raise _Invalid(f"{name} {text!r} is not accepted; expected {spec.accepted}")
        return text
    if spec.kind == "lora":
        from genbatch.pipelines.lora import parse_specs

        return parse_specs(_as_text(value, name))
    return _PARSE_KIND[spec.kind](value, name)


# A cell with no value (empty, blank, null, NaN): the field is not set on that row.
UNSET: Any = object()
_SLOW: Any = object()
_MEMO_LIMIT = 10_000  # distinct values remembered per column for fields parsed the slow way


def _fast_int(cell: str, name: str, limit: int) -> Any:
    if cell.isdigit() and cell.isascii():  # as int() reads it; anything else the slow way
        number = int(cell)
        if BY_NAME[name].in_range(number):
            return number if name != "num_images" or number <= limit else _SLOW
    return _SLOW


def _fast_float(cell: str, name: str, limit: int) -> Any:
    try:
        number = float(cell)  # float() strips whitespace as _as_float does
    except ValueError:
        return _SLOW
    return number if BY_NAME[name].in_range(number) else _SLOW  # NaN and infinities are not


def _fast_text(cell: str, name: str, limit: int) -> Any:
    return cell.strip()  # never blank here: blank cells are UNSET before this


_FAST: dict[str, Callable[[str, str, int], Any]] = {
    "int": _fast_int,
    "float": _fast_float,
    "prompt": _fast_text,
    "text": _fast_text,
    "name": _fast_text,
}


def parse_column(name: str, cells: Sequence[Any], max_images: int) -> tuple[list[Any], dict[int, str]]:
    """Every cell of one field's column parsed as :func:`parse_value` would (UNSET where the
    cell is blank), and the message for each cell that is not valid, by position. Text cells
    of the common kinds are parsed inline; the others once per distinct value."""
    fast = _FAST.get(BY_NAME[name].kind)
    memo: dict[str, tuple[Any, str | None]] | None = None if fast else {}
    values: list[Any] = []
    errors: dict[int, str] = {}
    append = values.append
    for i, cell in enumerate(cells):
        if type(cell) is str:
            if not cell or cell.isspace():
                value = UNSET
            elif fast is not None:
                value = fast(cell, name, max_images)
            elif memo is not None and cell in memo:
                value, error = memo[cell]
                if error is not None:
                    errors[i] = error
            else:
                value = _SLOW
            if value is UNSET and name == "prompt":
                errors[i] = "the prompt is empty"
            if value is not _SLOW:
                append(value)
                continue
        value, error = _parse_cell(name, cell, max_images)
        if error is not None:
            errors[i] = error
        if memo is not None and type(cell) is str and len(memo) < _MEMO_LIMIT:
            memo[cell] = (value, error)
        append(value)
    return values, errors


def _parse_cell(name: str, cell: Any, max_images: int) -> tuple[Any, str | None]:
    """(value, None), or (UNSET, why) for a cell that is not valid."""
    if _is_missing(cell):
        return UNSET, "the prompt is empty" if name == "prompt" else None
    try:
        value = parse_value(name, cell)
        if name == "num_images":
            check_images_per_row(value, max_images)
    except ValueError as err:
        return UNSET, str(err)
    return value, None
