"""What a model's family refuses, found before any model loads: a pipeline genbatch does not
run, a missing component, a genbatch.json setting or a row value (a negative prompt,
max_sequence_length) the family does not take. ``genbatch validate`` and planning report each
one at its manifest row."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genbatch.errors import ModelError, Problem
from genbatch.pipelines.families import FLUX, Family, detect


def check_model(path: Path, defaults: dict[str, Any]) -> Family:
    """The family a model folder runs as on torch, or a ModelError saying why it cannot run:
    an unknown or refused pipeline, a missing component, or a genbatch.json setting the family
    does not take."""
    family = detect(path)
    if defaults.get("timesteps") and not family.timesteps:
        raise ModelError(
            f'{Path(path) / "genbatch.json"}: "timesteps": {family.title} pipelines take no list of '
            'timesteps; remove "timesteps"'
        )
    return family


def check_negative_prompt(family: Family, negative_prompt: str | None) -> str | None:
    """Why a job with this negative prompt cannot run on this family, or None."""
    if negative_prompt and not family.negative_prompt:
        why = " (it is guidance-distilled)" if family is FLUX else ""
        return f"{family.title} takes no negative prompt{why}; remove it for this model"
    return None


def plan_problems(jobs: Iterable[Any], manifest: str, columns: dict[str, str] | None = None) -> list[Problem]:
    """Why jobs of a plan cannot run on the torch backend, found before any model loads, each
    located at its row (the first row of a model that cannot run names it)."""
    columns = columns or {}
    families: dict[Path, Family | None] = {}
    problems: dict[tuple[Any, str], Problem] = {}
    for job in jobs:
        line, model = job.row.line, job.model
        if model.path not in families:
            try:
                families[model.path] = check_model(model.path, model.defaults)
            except ModelError as err:
                if job.row.model is None:  # --model's problem, not a manifest row's
                    raise ModelError(f"--model {model.name}: {err}") from None
                families[model.path] = None
                column = columns.get("model", "model")
                problems[(line, column)] = Problem(manifest, line, column, f"{model.name}: {err}")
        family = families[model.path]
        why = family and check_negative_prompt(family, job.negative_prompt)
        if why:
            given = job.row.values.get("negative_prompt") is not None
            column = columns.get("negative_prompt", "negative_prompt") if given else "--negative"
            # a row's own value: at its line; --negative: once per model, at its first row
            problems.setdefault((line if given else str(model.path), column), Problem(manifest, line, column, why))
        if family and job.values.get("max_sequence_length") and not family.max_sequence_length:
            column = columns.get("max_sequence_length", "max_sequence_length")
            why = f"{family.title} takes no max_sequence_length (SD3, Flux, PixArt and Sana do); remove it here"
            problems.setdefault((line, column), Problem(manifest, line, column, why))
    return list(problems.values())


def manifest_problems(manifest: Any, model: str | None = None, *, allow_pickle: bool = False) -> list[Problem]:
    """``genbatch validate``'s model checks: the models a manifest's rows use (its model
    column, else ``model``, else the default model) that cannot be found or cannot run on
    torch, the LoRAs they name that cannot be used (pickled ones unless ``allow_pickle``),
    and the row values their families do not take."""
    from genbatch.jobs import Defaults, Target
    from genbatch.manifest.read import Row
    from genbatch.pipelines.model_lookup import resolve_model
    from genbatch.plan.expand import iter_jobs
    from genbatch.plan.lora_sets import resolve_loras

    models: dict[str | None, Any] = {}
    problems: list[Problem] = []
    for row in manifest.rows:
        if row.model in models:
            continue
        try:
            models[row.model] = resolve_model(row.model if row.model is not None else model)
        except ModelError as err:
            models[row.model] = None
            column = manifest.columns.get("model", "model") if row.model is not None else "--model"
            problems.append(Problem(manifest.path, row.line, column, str(err)))
    loras = resolve_loras(manifest, None, allow_pickle=allow_pickle, problems=problems)
    # one job per row is enough to check it (a row may ask for thousands of images), made
    # one at a time and without its key (a million-row manifest is checked in flat memory)
    rows = (
        Row.of(row.index, row.line, row.columns, row.cells, {**row.values, "num_images": 1})
        for row in manifest.rows
        if models[row.model] is not None and (not row.values.get("lora") or row.values["lora"] in loras)
    )
    jobs = iter_jobs(rows, models, Defaults(num_images=1), Target("torch", "fp32"), loras, keys=False)
    return sorted(problems + plan_problems(jobs, manifest.path, manifest.columns), key=lambda p: p.line or 0)
