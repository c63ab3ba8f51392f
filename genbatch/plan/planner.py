"""The plan of a run: manifest rows into jobs (one per image, genbatch.plan.expand), their models,
file names (genbatch.plan.names), the host's shard, and the jobs in groups that can share a batch.

Seeds, keys, file names and shards depend only on a row's own content, never on its
neighbours, so reruns, ``--limit``, ``--shard`` and reordering other rows leave them unchanged.
The one exception is a name that a done image of another job already has: the runner gives the
new job another name (genbatch.plan.names.keep_done_files), so no image is ever written over.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from genbatch.echo import shown_bare
from genbatch.errors import GenbatchError, ManifestError, ModelError
from genbatch.jobs import Defaults as Defaults
from genbatch.jobs import Job as Job
from genbatch.jobs import Target as Target
from genbatch.jobs import derive_seed as derive_seed
from genbatch.jobs import job_key as job_key
from genbatch.manifest.read import Manifest
from genbatch.pipelines.model_lookup import ModelRef, resolve_model
from genbatch.plan import family_checks
from genbatch.plan.expand import expand_jobs as expand_jobs
from genbatch.plan.expand import iter_jobs as iter_jobs
from genbatch.plan.lora_sets import resolve_loras as resolve_loras
from genbatch.plan.names import DEFAULT_NAME_TEMPLATE as DEFAULT_NAME_TEMPLATE
from genbatch.plan.names import assign_file_names
from genbatch.plan.names import slugify as slugify


@dataclass(frozen=True)
class PlanOptions:
    """What decides a run's jobs: the model (``config``: a single-file model's pipeline folder or
    hub id; ``vae``: --vae), the backend and scheduler they are keyed for, the values of rows
    without their own (``defaults``), their file names, and which of them this host runs."""

    model: str | None = None
    config: str | None = None
    vae: str | None = None
    backend: str = "torch"
    scheduler: str | None = None
    defaults: Defaults = field(default_factory=Defaults)
    name_template: str = DEFAULT_NAME_TEMPLATE
    image_format: str = "png"
    limit: int | None = None
    shard: tuple[int, int] | None = None


@dataclass
class Plan:
    """The jobs of this run (after --shard and --limit), the models they use, and where they run."""

    jobs: list[Job]
    models: list[ModelRef] = field(default_factory=list)
    device: str = "cpu"
    dtype: str = "fp32"
    warnings: list[str] = field(default_factory=list)  # what the models ignore of what was asked


def resolve_models(
    manifest: Manifest, default: str | None, *, config: str | None = None, vae: str | None = None
) -> dict[str | None, ModelRef]:
    """The model of every row (``None``: rows without a model column use ``default``);
    ``config`` and ``vae``: --config and --vae (genbatch.pipelines.checkpoints)."""
    models: dict[str | None, ModelRef] = {}
    if any(row.model is None for row in manifest.rows) or not manifest.rows:
        models[None] = resolve_model(default, config=config, vae=vae)
    for row in manifest.rows:
        if row.model is not None and row.model not in models:
            try:
                models[row.model] = resolve_model(row.model, config=config, vae=vae)
            except ModelError as err:
                column = manifest.columns.get("model", "model")
                raise ModelError(f"{manifest.path}:{row.line}:{shown_bare(column)}: {err}") from None
    return models


def check_torch_only(jobs: list[Job], backend: str) -> None:
    """LoRAs, prompt weighting, step caches and quantization run on the torch backend, on
    pipelines that take them (caches: genbatch.plan.family_checks); anything else is refused
    before a model loads."""
    from genbatch.pipelines import lora, prompt_weighting

    checks = (("lora", lora.check_model), ("prompt_weighting", prompt_weighting.check_model))
    for name, check in (
        *checks,
        ("cache", None),
        ("quantize", None),
        ("image", None),
        ("control_image", None),
        ("ip_adapter_image", None),
    ):
        using = [j for j in jobs if j.values.get(name)]
        if using and backend != "torch":
            raise GenbatchError(
                f"line {using[0].row.line}: {name.replace('_', ' ')} needs --backend torch; "
                f"the {backend} backend does not apply it"
            )
        if check is None:
            continue
        for model in {id(j.model): j.model for j in using}.values():
            try:
                class_name = json.loads((model.path / "model_index.json").read_text(encoding="utf-8"))["_class_name"]
            except (OSError, ValueError, KeyError):
                continue  # not a diffusers folder: the backend says so when it loads
            check(class_name, model.name)


def make_plan(
    manifest: Manifest, options: PlanOptions, device: str = "cpu", dtype: str = "fp32", *, allow_pickle: bool = False
) -> Plan:
    """The jobs this run makes (shard and limit applied), for the resolved ``device`` and ``dtype``;
    ``allow_pickle``: the torch backend's --allow-pickle (TorchOptions), which pickled LoRAs need."""
    models = resolve_models(manifest, options.model, config=options.config, vae=options.vae)
    loras = resolve_loras(manifest, options.defaults.lora, allow_pickle=allow_pickle)
    jobs = expand_jobs(
        manifest.rows, models, options.defaults, Target(options.backend, dtype, options.scheduler), loras
    )
    check_torch_only(jobs, options.backend)
    if options.backend == "torch":  # before any model loads: models that cannot run, options they do not take
        problems = family_checks.plan_problems(jobs, manifest.path, manifest.columns)
        if problems:
            raise ManifestError(problems)
    notes = family_checks.plan_notes(jobs, options.defaults) if options.backend == "torch" else []
    assign_file_names(jobs, options.name_template, options.image_format)
    selected = select(jobs, options.shard, options.limit)
    used = {id(j.model): j.model for j in selected}
    return Plan(selected, list(used.values()), device, dtype, notes)


# --- selecting and batching ----------------------------------------------------------------


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``--shard I/N`` (1-based: 1/4 ... 4/4) -> (I, N)."""
    if not text:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise GenbatchError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 1/4")
    return int(match[1]), int(match[2])


def select(jobs: list[Job], shard: tuple[int, int] | None, limit: int | None) -> list[Job]:
    """The jobs this host runs: its shard (by key, so stable across hosts and reruns), then
    the first ``limit`` of them in plan order."""
    if shard is not None:
        number, count = shard
        jobs = [j for j in jobs if int(j.key[:12], 16) % count == number - 1]
    if limit is not None:
        jobs = jobs[:limit]
    return jobs


def count_batches(jobs: Iterable[Job], batch_size: int) -> int:
    """How many batches of up to ``batch_size`` the groups of ``jobs`` make (a dry run's estimate;
    the engine sizes the real batches)."""
    sizes: dict[tuple[Any, ...], int] = {}
    for job in jobs:
        group = job.group
        sizes[group] = sizes.get(group, 0) + 1
    return sum(-(-size // batch_size) for size in sizes.values())


def ordered_groups(jobs: list[Job]) -> list[list[Job]]:
    """The jobs that can share a batch (same settings), in the order they run: each model's
    groups together, models in order of first appearance, groups by their first job, jobs in
    plan order within a group. The engine cuts each group into batches of the size it chooses."""
    groups: dict[tuple[Any, ...], list[Job]] = {}
    model_order: dict[str, int] = {}
    for job in jobs:
        model_order.setdefault(job.model.id, len(model_order))
        groups.setdefault(job.group, []).append(job)
    return sorted(groups.values(), key=lambda g: (model_order[g[0].model.id], g[0].index))
