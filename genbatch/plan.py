"""Turn manifest rows into jobs (one per image) and jobs into batches.

A job's key is a hash of everything that determines its pixels, so "done" can be decided
from the ledger alone and a changed parameter is a new job. Seeds, file names and shards
depend only on a row's own content, never on its neighbours, so reruns, ``--limit``,
``--shard`` and reordering other rows leave them unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from . import families, family_checks
from . import image_formats as formats
from .echo import shown, shown_bare
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
    template_values,
)
from .manifest import Manifest, Row
from .model_files import keeps_own_scheduler
from .model_lookup import ModelRef, resolve_model
from .samplers import resolve as resolve_scheduler

if TYPE_CHECKING:
    from .runner import RunOptions

DEFAULT_NAME_TEMPLATE = "{index:06d}-{slug}-{seed}.{ext}"
# {bucket} in a name template: index // 1000, so "{bucket:04d}/{index:07d}.png" keeps every
# folder of a million-image run to 1,000 files.
BUCKET_SIZE = 1000
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


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
        return (
            self.model.fingerprint,
            str(self.model.path),
            *(self.values[name] for name in GROUP_FIELDS),
            self.values["negative_prompt"] is None,
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


def job_key(fields: dict[str, Any]) -> str:
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def slugify(text: str, limit: int = 40) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "image"


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
    jobs: list[Job] = []
    occurrences: dict[str, int] = {}
    family_of: dict[Any, str] = {}
    row_seeds: dict[int, int] = {}
    for row in rows:
        model = models[row.model]
        if row.seed is not None:
            base = row.seed
        elif row.index in row_seeds:
            base = row_seeds[row.index]
        else:
            if row.id is not None:
                identity = f"id\x00{row.id}"
            else:
                nth = occurrences.get(row.prompt, 0)
                occurrences[row.prompt] = nth + 1
                identity = f"prompt\x00{row.prompt}\x00{nth}"
            base = derive_seed(defaults.seed, identity)
            row_seeds[row.index] = base
        values = dict.fromkeys(JOB_FIELDS)
        for name, kind, off in _RESOLVED:
            value = row.values.get(name)
            if value is None:
                value = defaults.get(name)
                if value is None:
                    value = model.defaults.get(name)
            if off is not None and value == off:  # a row's "none" beats the run option, then is unset
                value = None
            values[name] = value if value is None or kind is None else kind(value)
        if values.get("lora"):
            values["lora"] = (loras or {})[values["lora"]]
        # A row's sampler, else --scheduler, else the model's own: a class and its options.
        requested = row.scheduler or target.scheduler
        values["scheduler"], values["scheduler_options"] = resolve_scheduler(requested, model.scheduler)
        values["family"] = family_of.get(model.path) or family_of.setdefault(model.path, model.family)
        values["negative_prompt"] = families.job_negative(model.path, values["negative_prompt"])
        # A model's own timesteps go with its own scheduler; --scheduler picks another's spacing too.
        if keeps_own_scheduler(requested and values["scheduler"], model.scheduler) and not values["scheduler_options"]:
            values["timesteps"] = model.defaults.get("timesteps", {}).get(values["steps"])
        count = row.num_images if row.num_images is not None else defaults.num_images
        for k in range(count):
            job_values = dict(values, seed=(base + k) % (MAX_SEED + 1))
            key = job_key(
                {"model": model.fingerprint, "dtype": target.dtype, "backend": target.backend, **key_values(job_values)}
            )
            jobs.append(Job(len(jobs), key, row, k, model, target.backend, target.dtype, job_values))
    return jobs


# The fields a row, a run option or the model sets (the rest are derived), with how to coerce
# a model default read from JSON, and the value that means "not set" (genbatch.fields.Field.off).
_RESOLVED: tuple[tuple[str, Any, Any], ...] = tuple(
    (name, {"int": int, "float": float}.get(BY_NAME[name].kind), BY_NAME[name].off)
    for name in JOB_FIELDS
    if name in ROW_FIELDS
)


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
        problems = family_checks.plan_problems(jobs, manifest.path, manifest.columns)
        if problems:
            raise ManifestError(problems)
    assign_file_names(jobs, options.name_template, options.image_format)
    selected = select(jobs, options.shard, options.limit)
    used = {id(j.model): j.model for j in selected}
    return Plan(selected, list(used.values()), device, dtype)


# --- file names ----------------------------------------------------------------------------


# Limits on what a name template may do with manifest values: each value is cut to
# VALUE_BYTES of UTF-8, a width or precision in a format spec (``{seed:>8}``) may not pass
# MAX_FORMAT_WIDTH (a file name cannot be longer anyway), and each folder or file name of
# the result must fit NAME_BYTES, the limit of ext4, APFS, NTFS and most others.
VALUE_BYTES = 120
MAX_FORMAT_WIDTH = 255
NAME_BYTES = 255
# Names Windows reserves whatever the extension (``NUL.txt`` is the null device there).
_RESERVED = re.compile(r"^(?:CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(?:\..*)?$", re.IGNORECASE)


class _SafeFormatter(string.Formatter):
    """Formats a name template, neutralising every substituted value.

    Values come from users' manifests: a ``/``, ``..`` or control character in an id must
    never steer a file outside the output folder, so each value is cleaned after formatting;
    only the template's own literal text may contain ``/`` (sub-folders). Fields are plain
    names (no ``{prompt.__class__}`` or ``{x[0]}``) and format widths are bounded, so a
    template cannot reach into Python objects or allocate gigabytes.
    """

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        if not field_name or field_name.isdigit():
            raise GenbatchError("fields are named, e.g. {seed}; {} and {0} have no value here")
        if "." in field_name or "[" in field_name:
            raise GenbatchError(
                f"{{{shown_bare(field_name, 60)}}}: attribute and index access are not allowed in a name "
                "template; use a plain field name such as {id} or {seed}"
            )
        return self.get_value(field_name, args, kwargs), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        for digits in re.findall(r"\d+", format_spec):
            if len(digits) > 3 or int(digits) > MAX_FORMAT_WIDTH:
                raise GenbatchError(
                    f"format spec {shown(format_spec, 40)}: widths and precisions above {MAX_FORMAT_WIDTH} "
                    "are not allowed in a file name"
                )
        text = super().format_field(value, format_spec)[: 4 * VALUE_BYTES]
        text = "".join("_" if _UNSAFE.match(c) or unicodedata.category(c)[0] == "C" else c for c in text).strip()
        text = re.sub(r"\.{2,}", "_", text).lstrip(".")
        return text.encode("utf-8")[:VALUE_BYTES].decode("utf-8", "ignore")


def name_fields(job: Job, ext: str) -> dict[str, Any]:
    """The values a name template can use: plain text and numbers only (a nested JSON or
    Parquet value is given as its JSON text)."""
    fields: dict[str, Any] = {}
    for column, value in job.row.fields.items():
        if value is None:
            value = ""
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            value = json.dumps(value, ensure_ascii=False, default=str)
        fields[str(column)] = value
    fields.update(template_values(job.values))
    fields.update(
        {
            "index": job.index,
            "row": job.row.index,
            "line": job.row.line,
            "k": job.k,
            "bucket": job.index // BUCKET_SIZE,
            "id": job.row.id or "",
            "slug": slugify(job.prompt),
            "model": job.model.name.replace("/", "--"),
            "key": job.key,
            "ext": ext,
        }
    )
    return fields


def _check_parts(path: PurePosixPath, template: str) -> PurePosixPath:
    """Refuse names genbatch itself uses or that file systems cannot hold; neutralise the
    names Windows reserves (``CON.png`` -> ``_CON.png``)."""
    from .contact_sheet import _SHEET_RE
    from .safe_write import TEMP_MARKER

    parts = []
    for part in path.parts:
        if part.startswith("."):
            raise GenbatchError(
                f"--name-template {shown(template)} gives {shown(path.as_posix())}: a name that begins with '.' "
                f"is hidden and may be taken for genbatch's own files (.genbatch-thumbs, .NAME{TEMP_MARKER}XXXX "
                "temp files that a rerun deletes); start the name with a letter or digit"
            )
        if _RESERVED.match(part):
            part = "_" + part
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > NAME_BYTES:
            raise GenbatchError(
                f"--name-template {shown(template)} gives a name of {size} bytes, {shown(part, 60)}; file systems "
                f"allow {NAME_BYTES} bytes per file or folder name: use shorter fields ({{slug}}, {{index}}, {{seed}})"
            )
        parts.append(part)
    if len(parts) == 1 and _SHEET_RE.match(parts[0]):
        raise GenbatchError(
            f"--name-template {shown(template)} gives {shown(parts[0])}, the name of a contact sheet that "
            "`genbatch report --contact-sheet` writes over; use another name"
        )
    return PurePosixPath(*parts)


def assign_file_names(jobs: list[Job], template: str, image_format: str) -> None:
    """Give each job its output path (relative to --out); refuse unsafe templates and clashes."""
    ext = formats.image_format(image_format).ext
    if template.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", template):
        raise GenbatchError(f"--name-template {shown(template)}: must be a relative path inside --out")
    formatter = _SafeFormatter()
    seen: dict[str, Job] = {}
    clashes: list[str] = []
    for job in jobs:
        fields = name_fields(job, ext)
        try:
            name = formatter.vformat(template, (), fields)
        except KeyError as err:
            available = ", ".join(sorted(k for k in fields if k.isidentifier()))
            raise GenbatchError(
                f"--name-template: unknown field {shown(err.args[0] if err.args else '')}; "
                f"available fields: {shown_bare(available, 2000)}"
            ) from None
        except GenbatchError as err:
            raise GenbatchError(f"--name-template {shown(template)}: {err}") from None
        except (ValueError, IndexError, TypeError) as err:
            raise GenbatchError(
                f"--name-template {shown(template)}: {shown_bare(str(err))} (line {job.row.line})"
            ) from None
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts) or not path.parts:
            raise GenbatchError(f"--name-template {shown(template)} gives {shown(name)}, which is not inside --out")
        named = formats.BY_EXTENSION.get(path.suffix.lower().lstrip("."))
        if named is None:
            path = path.with_name(f"{path.name}.{ext}")
        elif named.ext != ext:  # "{file_name}" = 000123.jpg written as PNG -> 000123.png
            path = path.with_suffix(f".{ext}")
        job.file = _check_parts(path, template).as_posix()
        folded = job.file.lower()
        if folded in seen:
            clashes.append(f"{shown(job.file)}: line {seen[folded].row.line} and line {job.row.line}")
        else:
            seen[folded] = job
    if clashes:
        more = f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        shown_clashes = "\n  ".join(clashes[:10]) + more
        raise GenbatchError(
            f"--name-template {shown(template)} gives the same file name to different images:\n  {shown_clashes}\n"
            "add {index}, {seed} or {k} to the template"
        )


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
