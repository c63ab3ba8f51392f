"""Turn manifest rows into jobs (one per image) and jobs into batches.

A job's key is a hash of everything that determines its pixels, so "done" can be decided
from the ledger alone and a changed parameter is a new job. Seeds, file names and shards
depend only on a row's own content, never on its neighbours, so reruns, ``--limit``,
``--shard`` and reordering other rows leave them unchanged.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import families
from .bulk import paused_gc
from .echo import shown_bare
from .errors import GenbatchError, ManifestError, ModelError
from .fields import (
    BY_NAME,
    GROUP_FIELDS,
    JOB_FIELDS,
    MAX_SEED,
    ROW_FIELDS,
    Values,
    key_values,
    record_values,
)
from .manifest import Manifest, Row
from .models import ModelRef, keeps_own_scheduler, resolve_model
from .names import DEFAULT_NAME_TEMPLATE as DEFAULT_NAME_TEMPLATE
from .names import assign_file_names
from .names import slugify as slugify
from .samplers import resolve as resolve_scheduler

if TYPE_CHECKING:
    from .runner import RunOptions


@dataclass(frozen=True)
class Defaults:
    """What a row leaves out is taken from here (run options), then from the model."""

    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None  # None: the model's own default (genbatch.families.job_negative)
    num_images: int = 1
    clip_skip: int | None = None
    seed: int = 0  # the base seed that rows without a seed derive theirs from
    lora: tuple[Any, ...] | None = None  # --lora: parsed specs (genbatch.lora.LoraSpec)
    prompt_weighting: str | None = None  # --prompt-weighting

    def get(self, name: str) -> Any:
        return getattr(self, name, None)


@dataclass(frozen=True)
class Target:
    """Run-wide settings that determine pixels: which backend runs, at which precision."""

    backend: str
    dtype: str
    scheduler: str | None = None  # overrides the model's own scheduler when set


_GROUP_VALUES = operator.itemgetter(*GROUP_FIELDS)


@dataclass(eq=False, slots=True)
class Job(Values):
    """One image to make: its row, its model and every generation field resolved (``values``,
    in :data:`genbatch.fields.JOB_FIELDS` order, readable as ``job.seed``, ``job.steps``...)."""

    index: int
    key: str
    row: Row
    k: int
    model: ModelRef
    backend: str
    dtype: str
    values: dict[str, Any]
    file: str = ""

    @property
    def group(self) -> tuple[Any, ...]:
        """Jobs with the same group can share a batch (one pipeline call cannot mix jobs with and
        without a negative prompt)."""
        values = self.values
        return (
            self.model.fingerprint,
            str(self.model.path),
            *_GROUP_VALUES(values),
            values["negative_prompt"] is None,
        )

    @property
    def call(self) -> dict[str, Any]:
        """What the model's pipeline is called with for this image, the generator aside."""
        return families.recorded_call(self)

    def params(self) -> dict[str, Any]:
        """The generation fields that are set, as the ledger and image metadata record them."""
        return record_values(self.values)


@dataclass
class Plan:
    """The jobs of this run (after --shard and --limit), the models they use, and where they run."""

    jobs: list[Job]
    models: list[ModelRef] = field(default_factory=list)
    device: str = "cpu"
    dtype: str = "fp32"


def derive_seed(base_seed: int, identity: str) -> int:
    """A seed from the base seed and a row's identity; 63 bits so that seed + k never wraps."""
    digest = hashlib.sha256(f"{base_seed}\x00{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")), made once
_KEY_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def job_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(_KEY_JSON.encode(fields).encode()).hexdigest()[:20]


# The fields a row, a run option or the model sets (the rest are derived), with how to coerce
# a model default read from JSON, and the value that means "not set" (genbatch.fields.Field.off).
_RESOLVED: dict[str, tuple[Any, Any]] = {
    name: ({"int": int, "float": float}.get(BY_NAME[name].kind), BY_NAME[name].off)
    for name in JOB_FIELDS
    if name in ROW_FIELDS
}


def _settle(name: str, value: Any) -> Any:
    """A field's value as a job holds it: "not set" (a row's "none") as None, a model
    default read from JSON coerced."""
    kind, off = _RESOLVED[name]
    if off is not None and value == off:
        return None
    return value if value is None or kind is None else kind(value)


@dataclass
class _ModelSettings:
    """What every job of one model starts from: the run options, else the model's defaults."""

    model: ModelRef
    values: dict[str, Any]
    negative: str | None  # a job's negative prompt where none is given (families.job_negative)
    schedulers: dict[Any, tuple[str, Any, bool]] = field(default_factory=dict)

    @classmethod
    def of(cls, model: ModelRef, defaults: Defaults) -> _ModelSettings:
        values = dict.fromkeys(JOB_FIELDS)
        for name in _RESOLVED:
            value = defaults.get(name)
            values[name] = _settle(name, model.defaults.get(name) if value is None else value)
        values["family"] = model.family
        return cls(model, values, families.job_negative(model.path, None))

    def scheduler(self, requested: str | None) -> tuple[str, Any, bool]:
        """A row's sampler, else --scheduler, else the model's own: (class, options, whether
        the model's own timesteps go with it)."""
        if requested not in self.schedulers:
            name, options = resolve_scheduler(requested, self.model.scheduler)
            own = keeps_own_scheduler(requested and name, self.model.scheduler) and not options
            self.schedulers[requested] = (name, options, own)
        return self.schedulers[requested]


def _row_seed(row: Row, base_seed: int, occurrences: dict[str, int], row_seeds: dict[int, int]) -> int:
    """The seed of a row's first image: its own, else one derived from its id, else from its
    prompt and how often that prompt came before (copies made by --vary share it)."""
    own = row.values
    seed = own.get("seed")
    if seed is not None:
        return int(seed)
    if row.index in row_seeds:
        return row_seeds[row.index]
    if own.get("id") is not None:
        identity = f"id\x00{own['id']}"
    else:
        prompt = own.get("prompt")
        nth = occurrences.get(prompt, 0)  # type: ignore[arg-type]
        occurrences[prompt] = nth + 1  # type: ignore[index]
        identity = f"prompt\x00{prompt}\x00{nth}"
    row_seeds[row.index] = seed = derive_seed(base_seed, identity)
    return seed


def expand_jobs(
    rows: Iterable[Row],
    models: dict[str | None, ModelRef],
    defaults: Defaults,
    target: Target,
    loras: dict[Any, Any] | None = None,
) -> list[Job]:
    """Rows x num_images -> jobs, with every field resolved: the row's value, else the run
    option's, else the model's. ``loras``: each LoRA set as parsed -> its files (genbatch.lora).
    Rows with the same ``index`` (one manifest row varied by ``--vary``) share its seed."""
    with paused_gc():
        return list(iter_jobs(rows, models, defaults, target, loras))


def iter_jobs(
    rows: Iterable[Row],
    models: dict[str | None, ModelRef],
    defaults: Defaults,
    target: Target,
    loras: dict[Any, Any] | None = None,
    *,
    keys: bool = True,
) -> Iterator[Job]:
    """:func:`expand_jobs` one job at a time (``keys=False``: with no key, for checks that
    need none), so that checking a million rows never holds a million jobs."""
    occurrences: dict[str, int] = {}
    row_seeds: dict[int, int] = {}
    settings: dict[str | None, _ModelSettings] = {}
    index = 0
    for row in rows:
        own = row.values
        found = settings.get(row.model)
        if found is None:
            found = settings[row.model] = _ModelSettings.of(models[row.model], defaults)
        model = found.model
        base = _row_seed(row, defaults.seed, occurrences, row_seeds)
        values = dict(found.values)
        for name, value in own.items():
            if value is not None and name in _RESOLVED:
                values[name] = _settle(name, value)
        if values["lora"]:
            values["lora"] = (loras or {})[values["lora"]]
        values["scheduler"], values["scheduler_options"], own_steps = found.scheduler(
            own.get("scheduler") or target.scheduler
        )
        if values["negative_prompt"] is None:
            values["negative_prompt"] = found.negative
        # A model's own timesteps go with its own scheduler; --scheduler picks another's spacing too.
        if own_steps:
            values["timesteps"] = model.defaults.get("timesteps", {}).get(values["steps"])
        count = own.get("num_images")
        count = defaults.num_images if count is None else count
        key: dict[str, Any] = {"model": model.fingerprint, "dtype": target.dtype, "backend": target.backend}
        key.update(key_values(values) if keys else {})
        for k in range(count):
            seed = (base + k) % (MAX_SEED + 1)
            job_values = dict(values, seed=seed) if count > 1 else values
            job_values["seed"] = key["seed"] = seed
            yield Job(index, job_key(key) if keys else "", row, k, model, target.backend, target.dtype, job_values)
            index += 1


def resolve_models(
    manifest: Manifest, default: str | None, *, config: str | None = None, vae: str | None = None
) -> dict[str | None, ModelRef]:
    """The model of every row (``None``: rows without a model column use ``default``);
    ``config`` and ``vae``: --config and --vae (genbatch.checkpoints)."""
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


def resolve_loras(manifest: Manifest, default: tuple[Any, ...] | None) -> dict[Any, Any]:
    """Each LoRA set of the manifest (and ``--lora``) as parsed -> its files; a set that
    cannot be found is refused as FILE:LINE:COLUMN before any model loads."""
    from .lora import LoraError, resolve_set

    base = Path(manifest.path).parent if manifest.path != "<stdin>" else None
    found: dict[Any, Any] = {}
    for line, specs in [(None, default), *((row.line, row.values.get("lora")) for row in manifest.rows)]:
        if specs and specs not in found:
            try:
                found[specs] = resolve_set(specs, base)
            except LoraError as err:
                where = f"{manifest.path}:{line}:{manifest.columns.get('lora', 'lora')}" if line else "--lora"
                raise LoraError(f"{where}: {err}") from None
    return found


def check_torch_only(jobs: list[Job], backend: str) -> None:
    """LoRAs and prompt weighting run on the torch backend, on pipelines that take them;
    anything else is refused before a model loads."""
    from . import lora, prompt_weighting

    for name, check in (("lora", lora.check_model), ("prompt_weighting", prompt_weighting.check_model)):
        using = [j for j in jobs if j.values.get(name)]
        if using and backend != "torch":
            raise GenbatchError(
                f"line {using[0].row.line}: {name.replace('_', ' ')} needs --backend torch; "
                f"the {backend} backend does not apply it"
            )
        for model in {id(j.model): j.model for j in using}.values():
            try:
                class_name = json.loads((model.path / "model_index.json").read_text(encoding="utf-8"))["_class_name"]
            except (OSError, ValueError, KeyError):
                continue  # not a diffusers folder: the backend says so when it loads
            check(class_name, model.name)


def make_plan(manifest: Manifest, options: RunOptions) -> Plan:
    """The jobs this run makes (shard and limit applied), with the resolved device and dtype."""
    from .backends import get_backend

    device, dtype = get_backend(options.backend).resolve(options.device, options.dtype)
    models = resolve_models(manifest, options.model, config=options.config, vae=options.vae)
    loras = resolve_loras(manifest, options.defaults.lora)
    jobs = expand_jobs(
        manifest.rows, models, options.defaults, Target(options.backend, dtype, options.scheduler), loras
    )
    check_torch_only(jobs, options.backend)
    if options.backend == "torch":  # before any model loads: models that cannot run, options they do not take
        problems = families.plan_problems(jobs, manifest.path, manifest.columns)
        if problems:
            raise ManifestError(problems)
    assign_file_names(jobs, options.name_template, options.image_format)
    selected = select(jobs, options.shard, options.limit)
    used = {id(j.model): j.model for j in selected}
    return Plan(selected, list(used.values()), device, dtype)


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
    """``len(make_batches(jobs, batch_size))``, without making them."""
    if batch_size < 1:
        raise GenbatchError("--batch-size must be at least 1")
    sizes: dict[tuple[Any, ...], int] = {}
    for job in jobs:
        group = job.group
        sizes[group] = sizes.get(group, 0) + 1
    return sum(-(-size // batch_size) for size in sizes.values())


def make_batches(jobs: list[Job], batch_size: int) -> list[list[Job]]:
    """Batches of up to ``batch_size`` jobs that share settings, in a deterministic order:
    groups in order of first appearance (so each model's jobs run together), jobs in plan
    order within a group."""
    if batch_size < 1:
        raise GenbatchError("--batch-size must be at least 1")
    groups: dict[tuple[Any, ...], list[Job]] = {}
    model_order: dict[str, int] = {}
    for job in jobs:
        model_order.setdefault(job.model.fingerprint + str(job.model.path), len(model_order))
        groups.setdefault(job.group, []).append(job)
    ordered = sorted(
        groups.values(), key=lambda g: (model_order[g[0].model.fingerprint + str(g[0].model.path)], g[0].index)
    )
    return [group[i : i + batch_size] for group in ordered for i in range(0, len(group), batch_size)]
