"""What the report page shows of ``OUT/compare.json`` (written by ``genbatch compare REF OUT``):
the summary of the pairs, what differs between the two runs, the worst pairs side by side,
the unpaired images with their reasons and the ``genbatch eval`` deltas. Plain data; the
page renders it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

COMPARE_NAME = "compare.json"
SHOWN_PAIRS = 200  # rows of the worst pairs on the page (all of them are in compare.json)
PICTURED_PAIRS = 8  # of those, the worst shown as pictures


def read_compare(out: Path) -> dict[str, Any] | None:
    """``OUT/compare.json``, or None where there is none (or it is unreadable)."""
    try:
        report = json.loads((Path(out) / COMPARE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def report_section(out: Path) -> dict[str, Any] | None:
    """The report's comparison section, or None when OUT has no compare.json.

    ``{"created_at", "ref", "differs", "summary", "bounds", "eval", "notes",
       "pairs": [{..., "ref_src", "src"}] (worst first, at most SHOWN_PAIRS), "n_pairs", "pictured",
       "unpaired": {"ref": [...], "fast": [...]}}``; ``ref_src`` is the REF image's path from OUT.
    """
    report = read_compare(out)
    if not report or not isinstance(report.get("summary"), dict):
        return None
    ref = report.get("ref") or {}
    from_out = ref.get("from_fast") or os.path.relpath(str(ref.get("path", "")), str(Path(out).resolve()))
    pairs = [
        {**p, "ref_src": f"{from_out}/{p['ref_file']}".replace("\\", "/"), "src": p["file"]}
        for p in report.get("pairs", [])[:SHOWN_PAIRS]
    ]
    return {
        "created_at": report.get("created_at"),
        "ref": ref,
        "differs": report.get("differs", []),
        "summary": report["summary"],
        "bounds": report.get("bounds") or {},
        "eval": report.get("eval") or {},
        "notes": report.get("notes", []),
        "pairs": pairs,
        "n_pairs": len(report.get("pairs", [])),
        "pictured": PICTURED_PAIRS,
        "unpaired": report.get("unpaired") or {"ref": [], "fast": []},
    }
