"""What the report page shows of ``OUT/eval.json``: a table of the metrics per group and
the per-image CLIP scores and shapes verdicts, worst first. Plain data; the page renders it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVAL_NAME = "eval.json"


def read_eval(out: Path) -> dict[str, Any] | None:
    """``OUT/eval.json`` as written by ``genbatch eval``, or None where there is none (or it is unreadable)."""
    path = Path(out) / EVAL_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _columns(groups: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(column id, heading) of the metrics any group has, in a fixed order."""
    present = {k for g in groups for k in g}
    columns = [("images", "images")]
    columns += [(k, h) for k, h in (("fid", "FID"), ("is", "IS"), ("clip", "CLIP score")) if k in present]
    if "diversity" in present:
        spaces = {s for g in groups for s in g.get("diversity", {})}
        columns += [(f"diversity.{s}", f"diversity ({s})") for s in ("pixel", "feature") if s in spaces]
    if "shapes" in present:  # the judge's categories in the order eval.json lists them, then "all"
        categories = dict.fromkeys(
            c for g in groups for c, v in g.get("shapes", {}).items() if isinstance(v, dict) and c != "all"
        )
        columns += [(f"shapes.{c}", f"shapes {c}") for c in (*categories, "all")]
    return columns


def _cell(group: dict[str, Any], column: str) -> float | int | None:
    if column in ("images", "fid", "clip"):
        return group.get(column)
    if column == "is":
        return group["is"]["mean"] if group.get("is") else None
    section, _, part = column.partition(".")
    value = group.get(section, {}).get(part)
    if not value:
        return None
    return value["value"] if section == "diversity" else value["accuracy"]


def report_section(out: Path) -> dict[str, Any] | None:
    """The report's evaluation section, or None when OUT has no eval.json.

    ``{"created_at", "metrics", "by", "columns": [{"id", "label"}],
       "rows": [{"group": {...}, "label": "model=shapes", "cells": {column id: number | None}}],
       "clip": [{"key", "file", "prompt", "seed", "group", "clip"}]            (worst first),
       "shapes": [{"key", "file", "prompt", "seed", "group", "failed": [...]}]  (failures first),
       "reference", "networks", "notes"}``
    """
    report = read_eval(out)
    if not report or not isinstance(report.get("groups"), list):
        return None
    groups = report["groups"]
    columns = _columns(groups)
    rows = [
        {
            "group": g["group"],
            "label": ", ".join(f"{k}={v}" for k, v in g["group"].items()) or "all",
            "cells": {c: _cell(g, c) for c, _ in columns},
        }
        for g in groups
    ]
    images = report.get("images", [])
    base = ("key", "file", "prompt", "seed", "group")
    clip = sorted(
        ({**{k: i.get(k) for k in base}, "clip": i["clip"]} for i in images if i.get("clip") is not None),
        key=lambda i: i["clip"],
    )
    shapes = [
        {**{k: i.get(k) for k in base}, "failed": [c for c, ok in i["shapes"].items() if ok is False]}
        for i in images
        if i.get("shapes")
    ]
    shapes.sort(key=lambda i: -len(i["failed"]))
    return {
        "created_at": report.get("created_at"),
        "metrics": report.get("metrics", []),
        "by": report.get("by", []),
        "columns": [{"id": c, "label": label} for c, label in columns],
        "rows": rows,
        "clip": clip,
        "shapes": shapes,
        "reference": report.get("reference"),
        "networks": report.get("networks", {}),
        "notes": report.get("notes", []),
    }
