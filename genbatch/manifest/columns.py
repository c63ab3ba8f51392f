"""Which file column feeds each generation field: ``--column`` first, then the field's
aliases (any case, spaces and dashes read as underscores); near misses are warned about."""

from __future__ import annotations

import difflib

from genbatch.echo import shown, shown_bare
from genbatch.errors import Problem
from genbatch.manifest.fields import ALIASES

# Extra near-miss targets: common spellings that are close to a field but not aliases.
_NEAR_MISS_TARGETS = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
_NEAR_MISS_TARGETS.update({"cfg_scale": "guidance_scale", "num_steps": "steps", "negative_prompts": "negative_prompt"})


def normalise_column(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def map_columns(
    header: list[str], column_map: dict[str, str], name: str
) -> tuple[dict[str, str], list[Problem], list[str]]:
    """Decide which file column feeds each field. Returns (field->column, problems, warnings)."""
    problems: list[Problem] = []
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
    warnings = _unused_columns(header, mapping, name)
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


def _unused_columns(header: list[str], mapping: dict[str, str], name: str) -> list[str]:
    """Warnings for columns that look like a field but are not read: a second spelling of a
    field already read, or a near miss (``negativ_prompt``)."""
    warnings: list[str] = []
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
    return warnings
