"""What a ledger line must hold to be used as a record: the ledger is text a person can
edit, so a line that breaks these rules is reported (with its line number) and skipped,
never a crash later on."""

from __future__ import annotations

import logging
from typing import Any

from genbatch.echo import shown
from genbatch.manifest.fields import FIELDS, Field

# What each field of a record must be for genbatch to use it; a record breaking this (the
# ledger is text a person can edit) is reported and skipped, never a crash later on. The
# numeric generation fields (seed, steps, size, guidance...) are held to their declaration in
# genbatch.manifest.fields, the same range a manifest cell or a run option is held to.
_TEXT, _INT, _NUMBER = "text", "a whole number", "a number"
_LIST, _OBJECT = "a list of whole numbers", "an object"
_I64_MAX = 2**63 - 1
_RANGED: dict[str, Field] = {f.name: f for f in FIELDS if f.job and f.kind in ("int", "float")}
_FIELD_TYPES: dict[str, str | Field] = {
    "key": _TEXT,
    "status": _TEXT,
    "file": _TEXT,
    "id": _TEXT,
    "prompt": _TEXT,
    "negative_prompt": _TEXT,
    "scheduler": _TEXT,
    "model": _TEXT,
    "model_path": _TEXT,
    "model_fingerprint": _TEXT,
    "backend": _TEXT,
    "device": _TEXT,
    "dtype": _TEXT,
    "finished_at": _TEXT,
    "sha256": _TEXT,
    "error": _TEXT,
    "run_id": _TEXT,
    "manifest": _TEXT,
    "index": _INT,
    "row": _INT,
    "line": _INT,
    "k": _INT,
    "seed": _RANGED["seed"],
    "steps": _RANGED["steps"],
    "width": _RANGED["width"],
    "height": _RANGED["height"],
    "batch_size": _INT,
    "bytes": _INT,
    "guidance_scale": _RANGED["guidance_scale"],
    "seconds": _NUMBER,
    "timesteps": _LIST,
    "fields": _OBJECT,
    **_RANGED,  # the other numeric fields (clip_skip, max_sequence_length), after these
}
# Records of a job (not of a skipped manifest row): "index", where present, is never null.
_INDEXED = ("done", "failed")
REPORTED = 10  # bad lines reported one by one; the rest are counted
_log = logging.getLogger("genbatch.store.ledger")


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """The default reporter: each message once per process (a run reads the ledger at its
    start and again for the reports)."""
    if message not in _warned:
        _warned.add(message)
        _log.warning(message)


def _type_name(value: Any) -> str:
    names = {str: "text", bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _fits(value: Any, kind: str | Field, surrogates: bool = True) -> bool:
    """Whether ``value`` is of ``kind``; ``surrogates=False``: the line holds no ``\\ud``
    escape, so no text in it can hold half a surrogate pair."""
    if isinstance(kind, Field):  # a generation field: of its kind, in its declared range
        return _of_kind(value, kind) and kind.in_range(value)
    if kind == _TEXT:
        return isinstance(value, str) and not (surrogates and _has_surrogate(value))
    if kind == _INT:  # what a 64-bit column of report.csv/.parquet holds
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if kind == _NUMBER:
        # NaN passes (json writes it for a float; readers show it as empty), infinities do not
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and (value != value or abs(value) < 2**63)
    if kind == _LIST:
        return isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63 for v in value
        )
    return isinstance(value, dict)


def _of_kind(value: Any, spec: Field) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if spec.kind == "int" else isinstance(value, (int, float))


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def record_problem(record: Any, surrogates: bool = True) -> str | None:
    """Why a parsed ledger line cannot be used as a record, or None if it can
    (``surrogates=False``: its line has no ``\\ud`` escape, see :func:`_fits`)."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {_type_name(record)}"
    if "key" not in record:
        return 'no "key"'
    if surrogates or not _plainly_fits(record):
        why = _field_problem(record, surrogates)
        if why is not None:
            return why
    if not record["key"]:
        return '"key" is empty'
    if record.get("index", 0) is None and record.get("status") in _INDEXED:
        return f'"index" is null, expected {_INT}'  # a job's record says which job it is
    file = record.get("file")
    if record.get("status") == "done" and not (file or "").strip():
        return 'a "done" record without a "file"'
    if file and (file.startswith(("/", "\\")) or ".." in file.replace("\\", "/").split("/") or ":" in file[:2]):
        return f'"file" {shown(file)} is not a path inside the output folder'
    return None


def _names(kind: str) -> tuple[str, ...]:
    return tuple(name for name, of in _FIELD_TYPES.items() if of == kind)


_TEXTS, _INTS, _NUMBERS, _LISTS, _OBJECTS = (_names(k) for k in (_TEXT, _INT, _NUMBER, _LIST, _OBJECT))
# (name, lo, hi, multiple) of the whole-number fields and (name, lo, hi) of the others
_WHOLE = tuple(
    (name, f.lo, f.hi if f.hi is not None else _I64_MAX, f.multiple_of)
    for name, f in _RANGED.items()
    if f.kind == "int"
)
_REAL = tuple((name, f.lo, f.hi if f.hi is not None else _I64_MAX) for name, f in _RANGED.items() if f.kind == "float")
_I64 = 2**63


def _plainly_fits(record: dict[str, Any]) -> bool:
    """A quick yes for a record whose fields are all plainly of their types (as genbatch
    writes them); a no sends it through :func:`_field_problem`, which says why."""
    get = record.get
    for name in _TEXTS:
        value = get(name)
        if value is not None and type(value) is not str:
            return False
    for name in _INTS:
        value = get(name)
        if value is not None and (type(value) is not int or not -_I64 <= value < _I64):
            return False
    for name in _NUMBERS:
        value = get(name)
        if value is not None and not (type(value) in (int, float) and (value != value or abs(value) < _I64)):
            return False
    for name in _LISTS:
        value = get(name)
        if value is not None and (type(value) is not list or any(type(v) is not int for v in value)):
            return False
        if value and not -_I64 <= min(value) <= max(value) < _I64:
            return False
    for name, lo, hi, multiple in _WHOLE:
        value = get(name)
        if value is not None and (type(value) is not int or not lo <= value <= hi or value % multiple):
            return False
    for name, lo, hi in _REAL:
        value = get(name)
        if value is not None and (type(value) not in (int, float) or not lo <= value <= hi):  # NaN: no
            return False
    return record["key"] is not None and all(type(get(name, {})) is dict for name in _OBJECTS)


def _field_problem(record: dict[str, Any], surrogates: bool) -> str | None:
    """The first field, in :data:`_FIELD_TYPES` order, that is not of its type."""
    for name, kind in _FIELD_TYPES.items():
        value = record.get(name)
        if value is None and name != "key":
            continue
        if not _fits(value, kind, surrogates):
            if kind == _TEXT and isinstance(value, str):
                return f'"{name}" holds half of a UTF-16 surrogate pair, not text'
            if isinstance(kind, Field):
                numeric = _of_kind(value, kind)
                kind_text = kind.accepted
            else:
                numeric = type(value) in (int, float) and kind in (_INT, _NUMBER)
                kind_text = kind
            what = "is out of range" if numeric else f"is {_type_name(value)}"
            return f'"{name}" {what}, expected {kind_text}'
    return None
