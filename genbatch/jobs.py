"""A job (one image to make) and what identifies it.

A job's key is a hash of everything that determines its pixels, so "done" can be decided
from the ledger alone and a changed parameter is a new job. Seeds derive from a row's own
content, never from its neighbours.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genbatch.manifest.fields import GROUP_FIELDS, JOB_FIELDS, Values, record_values
from genbatch.pipelines import families
from genbatch.pipelines.image_inputs import input_kind

if TYPE_CHECKING:
    from genbatch.manifest.read import Row
    from genbatch.pipelines.model_lookup import ModelRef


@dataclass(frozen=True)
class Defaults:
    """What a row leaves out is taken from here (run options), then from the model."""

    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None  # None: the model's own default (genbatch.pipelines.families.job_negative)
    num_images: int = 1
    clip_skip: int | None = None
    seed: int = 0  # the base seed that rows without a seed derive theirs from
    lora: tuple[Any, ...] | None = None  # --lora: parsed specs (genbatch.pipelines.lora.LoraSpec)
    prompt_weighting: str | None = None  # --prompt-weighting
    cache: str | None = None  # --cache (None: off)
    cache_threshold: float | None = None  # --cache-threshold (None: the cache's own)
    quantize: str | None = None  # --quantize (None: off); one value per run, applied as each model loads
    # Rows with images (genbatch.manifest.inputs): each applies only to the jobs with the input it needs.
    strength: float | None = None  # --strength (None: the pipeline's default)
    resize: str | None = None  # --resize: "fit", "fill" (None or "none": the input's own size)
    controlnet: str | None = None  # --controlnet: for rows with a control_image
    controlnet_conditioning_scale: float | None = None  # --control-scale
    ip_adapter: str | None = None  # --ip-adapter: for rows with an ip_adapter_image
    ip_adapter_scale: float | None = None  # --ip-adapter-scale

    def get(self, name: str) -> Any:
        return getattr(self, name, None)


@dataclass(frozen=True)
class Target:
    """Run-wide settings that determine pixels: which backend runs, at which precision."""

    backend: str
    dtype: str
    scheduler: str | None = None  # overrides the model's own scheduler when set


_JOB_FIELD_SET = frozenset(JOB_FIELDS)


class JobValues(dict[str, Any]):
    """A job's resolved generation fields. Those not set are not stored and read as None
    (``values["clip_skip"]``), which keeps a typical job's dict at 10 entries or fewer: 272
    bytes instead of 464, 190 MB less for a million-job plan."""

    __slots__ = ()

    def __missing__(self, name: str) -> None:
        if name in _JOB_FIELD_SET:
            return None
        raise KeyError(name)


@dataclass(eq=False, slots=True)
class Job(Values):
    """One image to make: its row, its model and every generation field resolved (``values``,
    in :data:`genbatch.manifest.fields.JOB_FIELDS` order, readable as ``job.seed``, ``job.steps``...)."""

    index: int
    key: str
    row: Row
    k: int
    model: ModelRef
    backend: str
    dtype: str
    values: dict[str, Any]
    file: str = ""
    shape_group: tuple[Any, ...] | None = None  # the group, when the plan made it once for many jobs

    @property
    def group(self) -> tuple[Any, ...]:
        """Jobs with the same group can share a batch (one pipeline call cannot mix jobs with and
        without a negative prompt)."""
        if self.shape_group is not None:
            return self.shape_group
        get = self.values.get
        inputs = (input_kind(self.values), get("control_image") is not None)  # one call takes one kind of inputs
        return (
            self.model.fingerprint,
            str(self.model.path),
            *map(get, GROUP_FIELDS),
            get("negative_prompt") is None,
            *inputs,
        )

    @property
    def call(self) -> dict[str, Any]:
        """What the model's pipeline is called with for this image, the generator aside."""
        return families.recorded_call(self)

    def params(self) -> dict[str, Any]:
        """The generation fields that are set, as the ledger and image metadata record them."""
        return record_values(self.values)


def derive_seed(base_seed: int, identity: str) -> int:
    """A seed from the base seed and a row's identity; 63 bits so that seed + k never wraps."""
    digest = hashlib.sha256(f"{base_seed}\x00{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")), made once
KEY_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def job_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(KEY_JSON.encode(fields).encode()).hexdigest()[:20]
