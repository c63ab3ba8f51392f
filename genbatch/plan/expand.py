"""Manifest rows x num_images -> jobs, every field resolved: the row's value, else the run
option's, else the model's.

Rows that differ only in prompt and seed (most rows of a large manifest) share one resolved
"shape": its values and its key's JSON text with the prompt and the seed left out, so each
job costs a dict copy and one hash, and a million rows expand in seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

from genbatch.bulk import paused_gc
from genbatch.jobs import KEY_JSON, Defaults, Job, JobValues, Target, derive_seed, job_key
from genbatch.manifest.fields import BY_NAME, JOB_FIELDS, MAX_SEED, ROW_FIELDS, key_values
from genbatch.manifest.read import Row
from genbatch.pipelines import families
from genbatch.pipelines.model_files import keeps_own_scheduler
from genbatch.pipelines.model_lookup import ModelRef
from genbatch.pipelines.samplers import resolve as resolve_scheduler
from genbatch.pipelines.speed import CACHE_THRESHOLDS

# The fields a row, a run option or the model sets (the rest are derived), with how to coerce
# a model default read from JSON, and the value that means "not set" (genbatch.manifest.fields.Field.off).
# A field without a manifest column (quantize) comes from its run option alone.
_RESOLVED: dict[str, tuple[Any, Any]] = {
    name: ({"int": int, "float": float}.get(BY_NAME[name].kind), BY_NAME[name].off)
    for name in JOB_FIELDS
    if name in ROW_FIELDS or BY_NAME[name].option
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
            if value is None and name in ROW_FIELDS:
                value = model.defaults.get(name)
            values[name] = _settle(name, value)
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
    option's, else the model's. ``loras``: each LoRA set as parsed -> its files (genbatch.pipelines.lora).
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
    shapes: dict[Any, _Shape] = {}
    index = 0
    for row in rows:
        own = row.values
        prompt = own.get("prompt")
        signature = _signature(row) if type(prompt) is str else None
        shape = shapes.get(signature) if signature is not None else None
        if shape is None:
            found = settings.get(row.model)
            if found is None:
                found = settings[row.model] = _ModelSettings.of(models[row.model], defaults)
            shape = _Shape.of(own, found, defaults, target, loras or {}, keys)
            if signature is not None and len(shapes) < _MAX_SHAPES:
                shapes[signature] = shape
        base = _row_seed(row, defaults.seed, occurrences, row_seeds)
        for k in range(shape.count):
            seed = (base + k) % (MAX_SEED + 1)
            values = JobValues(shape.values)
            if signature is not None:  # a text prompt: as the row gives it (_settle keeps it)
                values["prompt"] = prompt
            values["seed"] = seed
            key = shape.key_of(values["prompt"], seed) if keys else ""
            job = Job(index, key, row, k, shape.model, target.backend, target.dtype, values, "", shape.group)
            if shape.group is None:  # the group's fields are the same for every job of a shape
                job.shape_group = shape.group = job.group
            yield job
            index += 1


# Rows sharing a shape are told apart by these fields alone (an id changes only the seed).
_OWN = frozenset({"prompt", "seed", "id"})
_MAX_SHAPES = 4096  # a column of distinct values (a negative prompt per row) makes a shape per row
# Stand-ins for a row's prompt and seed in its shape's key text: JSON-escaped (\u0000), so no
# value read from a CSV can hold them, and the split is checked (see _Shape.of).
_PROMPT_MARK, _SEED_MARK = "\x00prompt\x00", "\x00seed\x00"


def _signature(row: Row) -> Any:
    """What a row's shape depends on (its model and its fields but prompt, seed and id), or
    None for a row whose values cannot be compared (it gets a shape of its own)."""
    signature = (row.model, tuple(item for item in row.values.items() if item[0] not in _OWN))
    try:
        hash(signature)
    except TypeError:
        return None
    return signature


# Settings that mean something only with an input: (setting, the input it needs).
_NEEDS_INPUT = (
    ("strength", "image"),
    ("controlnet", "control_image"),
    ("controlnet_conditioning_scale", "control_image"),
    ("ip_adapter", "ip_adapter_image"),
    ("ip_adapter_scale", "ip_adapter_image"),
)


def _input_size(values: dict[str, Any], source: Any, own: dict[str, Any], defaults: Defaults, model: ModelRef) -> None:
    """A job's width and height from its input image where neither its row nor a run option
    gives them: the input's, rounded down to the multiple the model's pipelines make."""
    multiple = families.input_size_multiple(model.path)
    for name, size in (("width", source.width), ("height", source.height)):
        if own.get(name) is None and defaults.get(name) is None:
            values[name] = size // multiple * multiple


@dataclass
class _Shape:
    """What rows that differ only in prompt and seed share: their model, their resolved values,
    how many images each makes, and their key's fields (``key``) and JSON text split around
    the prompt and the seed (``text``)."""

    model: ModelRef
    values: dict[str, Any]
    count: int
    key: dict[str, Any]
    text: tuple[str, str, str] | None
    group: tuple[Any, ...] | None = None  # its jobs' Job.group, made for the first of them

    @classmethod
    def of(
        cls, own: dict[str, Any], found: _ModelSettings, defaults: Defaults, target: Target, loras: Any, keys: bool
    ) -> _Shape:
        model = found.model
        values = dict(found.values)
        for name, value in own.items():
            if value is not None and name in _RESOLVED:
                values[name] = _settle(name, value)
        if values["lora"]:
            values["lora"] = loras[values["lora"]]
        values["scheduler"], values["scheduler_options"], own_steps = found.scheduler(
            own.get("scheduler") or target.scheduler
        )
        if values["negative_prompt"] is None:
            values["negative_prompt"] = found.negative
        # A step cache's threshold: the one asked, else the cache's own; none without a cache (so a
        # job without one keeps its key). TaylorSeer and FasterCache take none (family_checks refuses one).
        if values["cache"] is None:
            values["cache_threshold"] = None
        elif values["cache_threshold"] is None:
            values["cache_threshold"] = CACHE_THRESHOLDS.get(values["cache"])
        # A model's own timesteps go with its own scheduler; --scheduler picks another's spacing too.
        if own_steps:
            values["timesteps"] = model.defaults.get("timesteps", {}).get(values["steps"])
        source = values.get("image") or values.get("control_image")
        if source is not None:  # an input's size is the output size where no width and height are given
            _input_size(values, source, own, defaults, model)
        for name, needs in _NEEDS_INPUT:  # a setting of an input the job has not: not in its key either
            if values.get(needs) is None:
                values[name] = None
        if values.get("image") is None and values.get("control_image") is None:
            values["resize"] = None
        count = own.get("num_images")
        key = {"model": model.fingerprint, "dtype": target.dtype, "backend": target.backend}
        key.update(key_values(values) if keys else {})
        marked = dict(key, prompt=_PROMPT_MARK, seed=_SEED_MARK)
        text = KEY_JSON.encode(marked) if keys and type(values["prompt"]) is str else ""
        prompt_at, seed_at = KEY_JSON.encode(_PROMPT_MARK), KEY_JSON.encode(_SEED_MARK)
        split = None
        if text.count(prompt_at) == 1 and text.count(seed_at) == 1 and text.find(prompt_at) < text.find(seed_at):
            before, rest = text.split(prompt_at)
            split = (before, *rest.split(seed_at))
        compact = JobValues({name: value for name, value in values.items() if value is not None})
        return cls(model, compact, defaults.num_images if count is None else count, key, split)  # type: ignore[arg-type]

    def key_of(self, prompt: Any, seed: int) -> str:
        """:func:`genbatch.jobs.job_key` of a job of this shape."""
        if self.text is not None and type(prompt) is str:
            before, between, after = self.text
            blob = f"{before}{encode_basestring(prompt)}{between}{seed}{after}"
            return hashlib.sha256(blob.encode()).hexdigest()[:20]
        return job_key(dict(self.key, seed=seed) if prompt is None else dict(self.key, prompt=prompt, seed=seed))
