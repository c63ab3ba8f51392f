"""What a model's family refuses, found before any model loads: a pipeline genbatch does not
run, a missing component, a genbatch.json setting or a row value (a negative prompt,
max_sequence_length) the family does not take. ``genbatch validate`` and planning report each
one at its manifest row."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from genbatch.errors import ModelError, Problem
from genbatch.pipelines import speed
from genbatch.pipelines.families import (
    BY_NAME,
    FAMILIES,
    FLUX,
    Family,
    detect,
    folder_family,
    ignored_fields,
    input_size_multiple,
    job_pipeline_class,
    pipeline_class,
)
from genbatch.pipelines.image_inputs import (
    NOT_RUN,
    controlnet_problem,
    inpaint_problem,
    input_kind,
    ip_adapter_fit_problem,
    ip_adapter_problem,
    mapped_class,
    parameters,
    takes_ip_adapter,
)
from genbatch.plan.input_checks import denoising_problem, redraws_all_note


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
    caches: dict[tuple[Path, str], str | None] = {}
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
        for name, option, why in family and _speed_problems(job, caches) or ():
            given = job.row.values.get(name) is not None  # a row's own: at its line; an option's: once per model
            column = columns.get(name, name) if given else option
            problems.setdefault((line if given else str(model.path), column), Problem(manifest, line, column, why))
        for name, why in family and _value_problems(family, job) or ():
            column = columns.get(name, name)
            problems.setdefault((line, column), Problem(manifest, line, column, why))
    return list(problems.values())


def _speed_problems(job: Any, caches: dict[tuple[Path, str], str | None]) -> list[tuple[str, str, str]]:
    """(field, its run option, why) for a step cache a job's model does not take, and a threshold
    its cache does not take (genbatch.pipelines.speed); ``caches``: what each model and cache gave."""
    cache = job.values.get("cache")
    if not cache:
        return []
    found = []
    known = (job.model.path, cache)
    if known not in caches:
        caches[known] = speed.cache_problem(job.model.path, cache)
    if caches[known]:
        found.append(("cache", "--cache", str(caches[known])))
    if job.values.get("cache_threshold") is not None and cache not in speed.CACHE_THRESHOLDS:
        taking = " and ".join(speed.CACHE_THRESHOLDS)
        found.append(("cache_threshold", "--cache-threshold", f"--cache {cache} takes no threshold ({taking} do)"))
    return found


def _value_problems(family: Family, job: Any) -> list[tuple[str, str]]:
    """(field, why) for each of a job's values its family does not take, and a size it cannot make."""
    found = []
    if job.values.get("max_sequence_length") and not family.max_sequence_length:
        why = "its text encoders' lengths are fixed"
        found.append(("max_sequence_length", f"{family.title} takes no max_sequence_length ({why}); remove it here"))
    length, longest = job.values.get("max_sequence_length"), family.longest_sequence
    if length and family.max_sequence_length and longest and length > longest:
        found.append(
            ("max_sequence_length", f"{family.title} takes a max_sequence_length up to {longest}, not {length}")
        )
    for name in FAMILY_FIELDS:
        if job.values.get(name) is not None and name not in family.takes:
            found.append((name, f"{family.title} takes no {name} ({_taking(name)}); remove it here"))
    steps = _family_check(family, "steps_problem", job.model.path, job.steps)
    if steps:
        found.append(("steps" if "steps" in job.row.values else "--steps", str(steps)))
    size = _family_check(family, "size_problem", job.model.path, job.width, job.height)
    if size:
        found.append(("width" if "width" in job.row.values else "--width", str(size)))
    found += _input_problems(family, job)
    return found


def _input_problems(family: Family, job: Any) -> list[tuple[str, str]]:
    """(field, why) for a row's images its model cannot take (no image-to-image, inpainting or
    ControlNet pipeline of its family that genbatch runs), a row without the image an edit model
    needs, a control image without a ControlNet, and an input whose size is not the job's where
    --resize does not say how to make it so."""
    values = job.values
    kind, control = input_kind(values), values.get("control_image") is not None
    found = _ip_adapter_problems(family, job)
    if kind == "text" and not control:
        if family.needs_image:
            edits = f"{job.model.name} ({family.title}) edits an input image and makes none without one"
            found.append(("image", f"{edits}; give this row an image"))
        return found
    field = "mask_image" if kind == "inpaint" else "image" if kind == "img2img" else "control_image"
    base, made_by = pipeline_class(job.model.path), job_pipeline_class(job.model.path, values)
    if control and not values.get("controlnet"):
        found.append(("control_image", "a control image needs a ControlNet: a controlnet column, or --controlnet"))
    elif made_by is None:
        task = {"img2img": "image-to-image", "inpaint": "inpainting", "text": "text-to-image"}[kind]
        what = f"{task} pipeline with a ControlNet" if control else f"{task} pipeline"
        mapped = mapped_class(base, kind, control)
        if mapped in NOT_RUN:
            refused = (
                f"{job.model.name} ({family.title}): its {what}, {mapped}, {NOT_RUN[mapped]}; genbatch does not run it"
            )
        else:
            refused = f"{job.model.name} ({family.title}, {base}) has no {what} in diffusers"
        found.append((field, f"{refused}; remove it here"))
    elif control:
        why = controlnet_problem(values["controlnet"])
        if why:
            found.append(("controlnet", why))
    if kind == "inpaint" and (why := inpaint_problem(job.model.path)):
        found.append(("mask_image", f"{job.model.name} cannot inpaint: {why}"))
    if made_by and values.get("strength") is not None and "strength" not in parameters(made_by):
        found.append(
            (
                "strength" if "strength" in job.row.values else "--strength",
                f"{job.model.name} ({made_by}) takes no strength: it edits the image as the prompt says; "
                "remove it here",
            )
        )
    elif made_by and (why := denoising_problem(made_by, values.get("strength"), job.steps)):
        found.append(
            ("strength" if "strength" in job.row.values else "steps" if "steps" in job.row.values else "--steps", why)
        )
    resize = values.get("resize")
    for name in ("image", "control_image"):
        given = values.get(name)
        if given is None or resize not in (None, "none"):
            continue
        multiple = input_size_multiple(job.model.path)
        made = (given.width // multiple * multiple, given.height // multiple * multiple)
        if made != (job.width, job.height):
            found.append(
                (
                    name,
                    f"{given.path} is {given.width}x{given.height} and the job asks for {job.width}x{job.height}: "
                    "pass --resize fit (scale to fit, pad) or --resize fill (scale to cover, crop), "
                    "or leave width and height out to keep the input's size",
                )
            )
    return found


def _ip_adapter_problems(family: Family, job: Any) -> list[tuple[str, str]]:
    """(field, why) for a row's IP-Adapter image: one without an adapter, one whose model's
    pipelines load none (genbatch.pipelines.image_inputs.takes_ip_adapter), an adapter that is
    not there."""
    values = job.values
    if values.get("ip_adapter_image") is None:
        return []
    base = pipeline_class(job.model.path)
    if not takes_ip_adapter(base):
        return [
            (
                "ip_adapter_image",
                f"{job.model.name} ({family.title}, {base}) takes no IP-Adapter in genbatch (SD and SDXL models "
                "do); remove it here",
            )
        ]
    if not values.get("ip_adapter"):
        return [("ip_adapter_image", "an IP-Adapter image needs an IP-Adapter: an ip_adapter column, or --ip-adapter")]
    why = ip_adapter_problem(values["ip_adapter"]) or ip_adapter_fit_problem(values["ip_adapter"], job.model.path)
    return [("ip_adapter" if "ip_adapter" in job.row.values else "--ip-adapter", why)] if why else []


def _family_check(family: Family, hook: str, path: Path, *values: Any) -> str | None:
    """A family's ``size_problem`` or ``steps_problem`` for a model and values, or None where it has
    none; asked once per family, model and values (they read the model's configs, and a manifest
    has a million rows of a few sizes)."""
    if not getattr(family, hook):
        return None
    return _checked(family.name, hook, str(path), values)


@functools.lru_cache(maxsize=4096)
def _checked(family: str, hook: str, path: str, values: tuple[Any, ...]) -> str | None:
    check = BY_NAME[family].hook(hook)
    why = check(Path(path), *values) if check is not None else None
    return str(why) if why else None


def _taking(name: str) -> str:
    """The families that take a field, for messages: "Qwen-Image does", "Qwen-Image, Qwen-Image-Edit do"."""
    titles = [f.title for f in FAMILIES if name in f.takes]
    return f"{', '.join(titles)} {'does' if len(titles) == 1 else 'do'}"


# Generation fields that only some families take (Family.takes).
FAMILY_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(name for f in FAMILIES for name in f.takes))


def plan_notes(jobs: Iterable[Any], given: Any = None) -> list[str]:
    """What a run's models ignore of what was asked, said once per model and setting (not an
    error: the images are still the model's): a guidance_scale a model does not use, a negative
    prompt or true_cfg_scale that guidance turns off. ``given``: the run options' values
    (genbatch.jobs.Defaults), which count as asked like a row's own."""
    notes: dict[tuple[Any, str], str] = {}
    for _ in _noting(jobs, notes, given):
        pass
    return list(notes.values())


def _noting(jobs: Iterable[Any], notes: dict[tuple[Any, str], str], given: Any = None) -> Iterator[Any]:
    """``jobs``, passed on one at a time, with what their models ignore added to ``notes``."""
    families: dict[int, Family | None] = {}
    for job in jobs:
        key = id(job.model)
        if key not in families:
            families[key] = folder_family(job.model.path)
        family = families[key]
        if family is not None:
            for name, why in _ignored(family, job, given):
                notes.setdefault((job.model.path, name), f"{job.model.name} ({family.title}): {why}")
        yield job


def _ignored(family: Family, job: Any, given: Any) -> list[tuple[str, str]]:
    def asked(name: str) -> bool:
        return job.row.values.get(name) is not None or (given is not None and given.get(name) is not None)

    found = []
    ignored = ignored_fields(family, job.model.path)
    if "guidance_scale" in ignored and asked("guidance_scale"):
        found.append(("guidance_scale", f"guidance_scale is ignored: {family.guidance_meaning}"))
    negative = job.negative_prompt
    if "negative_prompt" in ignored and negative:
        found.append(("negative_prompt", "the negative prompt is ignored: this model runs no guidance that uses one"))
    off = family.guidance == "cfg" and job.guidance_scale <= family.guidance_off_at
    if off and "guidance_scale" not in ignored and negative:
        found.append(
            (
                "negative_prompt",
                f"the negative prompt has no effect at guidance_scale {job.guidance_scale:g} "
                f"({family.guidance_off_at:g} or less turns guidance off)",
            )
        )
    if input_kind(job.values) == "img2img":
        made_by = job_pipeline_class(job.model.path, job.values)
        note = redraws_all_note(made_by, job.values.get("strength"), job.steps) if made_by else None
        if note:
            found.append(("strength", note))
    if "true_cfg_scale" in family.takes:
        true_cfg = job.values.get("true_cfg_scale")
        if negative is not None and true_cfg is not None and true_cfg <= 1:
            found.append(
                (
                    "negative_prompt",
                    f"the negative prompt has no effect at true_cfg_scale {true_cfg:g} (1 or less turns true CFG off)",
                )
            )
        if negative is None and true_cfg is not None and true_cfg > 1 and asked("true_cfg_scale"):
            found.append(
                ("true_cfg_scale", "true_cfg_scale has no effect without a negative prompt (true CFG needs one)")
            )
    return found


def manifest_problems(manifest: Any, model: str | None = None, *, allow_pickle: bool = False) -> list[Problem]:
    """``genbatch validate``'s model checks: the models a manifest's rows use (its model
    column, else ``model``, else the default model) that cannot be found or cannot run on
    torch, the LoRAs they name that cannot be used (pickled ones unless ``allow_pickle``),
    and the row values their families do not take."""
    return manifest_checks(manifest, model, allow_pickle=allow_pickle)[0]


def manifest_checks(
    manifest: Any, model: str | None = None, *, allow_pickle: bool = False
) -> tuple[list[Problem], list[str]]:
    """:func:`manifest_problems`, and what the models would ignore of what the rows ask
    (:func:`plan_notes`), for ``genbatch validate``'s warnings."""
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
    notes: dict[tuple[Any, str], str] = {}
    checked = plan_problems(_noting(jobs, notes), manifest.path, manifest.columns)
    return sorted(problems + checked, key=lambda p: p.line or 0), list(notes.values())
