"""The LoRA sets of a manifest's rows (and ``--lora``) resolved to files before any model loads,
each one that cannot be used located at its row (genbatch.pipelines.lora finds the files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.errors import Problem
from genbatch.manifest.read import Manifest


def resolve_loras(
    manifest: Manifest,
    default: tuple[Any, ...] | None,
    *,
    allow_pickle: bool = False,
    problems: list[Problem] | None = None,
) -> dict[Any, Any]:
    """Each LoRA set of the manifest (and ``--lora``) as parsed -> its files; a set that
    cannot be found, or a pickled one without ``allow_pickle``, is refused as FILE:LINE:COLUMN
    (``--lora``) before any model loads. With ``problems``, each refusal is added there and the
    set left out, so that every one is reported (``genbatch validate``)."""
    from genbatch.pipelines.lora import LoraError, resolve_set

    base = Path(manifest.path).parent if manifest.path != "<stdin>" else None
    column = manifest.columns.get("lora", "lora")
    found: dict[Any, Any] = {}
    refused: dict[Any, str] = {}  # a set already refused: each of its rows is reported, once resolved
    for line, specs in [(None, default), *((row.line, row.values.get("lora")) for row in manifest.rows)]:
        if not specs or specs in found:
            continue
        if specs not in refused:
            try:
                found[specs] = resolve_set(specs, base, allow_pickle=allow_pickle)
                continue
            except LoraError as err:
                refused[specs] = str(err)
        if problems is None:
            where = f"{manifest.path}:{line}:{column}" if line else "--lora"
            raise LoraError(f"{where}: {refused[specs]}")
        problems.append(Problem(manifest.path, line, column if line else "--lora", refused[specs]))
    return found
