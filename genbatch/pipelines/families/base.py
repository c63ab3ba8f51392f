"""What a family is: one record per diffusers text-to-image family (:mod:`genbatch.pipelines.families`).

A family's fields are data (defaults, what its call takes, what its guidance and negative
prompt mean); where a family needs code (its own prompt encoding, a size check, settings
read from the model folder), it names a function here, imported only when that family runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What a row's guidance_scale does in a family (``Family.guidance``):
GUIDANCE_KINDS = {
    "cfg": "classifier-free guidance: above 1 the negative prompt (or an empty one) pushes away",
    "distilled": "embedded guidance (guidance-distilled): one pass per step, no negative prompt",
    "true-cfg": "ignored unless the model is guidance-distilled; true_cfg_scale guides, with a negative prompt",
    "none": "ignored: the model takes no guidance",
}


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    pipelines: tuple[str, ...]
    components: tuple[str, ...]  # what model_index.json must name for the pipeline to run
    steps: int
    guidance_scale: float
    size: int  # when the model's configs do not say
    negative_prompt: bool = True  # takes a negative prompt
    max_sequence_length: bool = False  # takes max_sequence_length
    longest_sequence: int | None = None  # the most max_sequence_length its pipeline accepts
    timesteps: bool = False  # takes a list of timesteps (a model's own, genbatch.json)
    fixed: dict[str, Any] = field(default_factory=dict)  # passed on every call
    onnx: bool = False  # genbatch export / --backend onnx
    notes: str = ""  # what differs from the other families, for genbatch models
    guidance: str = "cfg"  # what guidance_scale does: a key of GUIDANCE_KINDS
    # For users (README, genbatch models): what a row's guidance_scale and negative_prompt mean here.
    guidance_meaning: str = "classifier-free guidance; 1 or less turns it off"
    negative_meaning: str = "what to steer away from (with guidance above 1); none is the empty prompt"
    # Generation fields only this family takes (genbatch.manifest.fields), passed by name when set.
    takes: tuple[str, ...] = ()
    # None passed as the negative prompt gives other pixels than "" (true CFG on or off, a
    # zeroed embedding): a job without one keeps None, and the call leaves it out.
    none_negative_differs: bool = False
    # Where the pipeline reads force_zeros_for_empty_prompt (SDXL, Kolors): its default there; no
    # negative prompt is then a zeroed embedding when the model's model_index.json says so.
    zeroed_empty_negative: bool | None = None
    sample_size: int | None = None  # the pipeline's default_sample_size where its denoiser config has none
    guidance_off_at: float = 1.0  # a guidance_scale at or below this turns guidance (and the negative prompt) off
    needs_image: bool = False  # its pipeline edits an input image and makes none without: a row needs an image
    # Code a family needs, "module:function" under genbatch.pipelines (imported when used):
    #   ignores(path) -> frozenset of field names this model ignores (the call leaves them out);
    #   size_problem(path, width, height) / steps_problem(path, steps) -> why a job cannot run so, or None;
    #   call_args(path, job) -> what one job's call needs besides the fields (recorded in the ledger);
    #   model_defaults(path) -> steps, guidance_scale... that a model's configs imply (a step-distilled variant);
    #   batch_parts(pipe, jobs) -> the jobs cut into parts that one call can take without changing an image;
    #   encode(pipe, jobs, call) -> the call, its prompts encoded so a batch equals single images;
    #   images(pipe, call) -> the call, its input images as the pipeline makes one image of them (where
    #     it treats a list of images otherwise than one: Qwen-Image-Edit resizes one, not a list).
    ignores: str | None = None
    size_problem: str | None = None
    steps_problem: str | None = None
    call_args: str | None = None
    model_defaults: str | None = None
    batch_parts: str | None = None
    encode: str | None = None
    images: str | None = None

    def hook(self, name: str) -> Callable[..., Any] | None:
        """The function a family names for ``name`` (``ignores``, ``size_problem``, ``encode``), or None."""
        where = getattr(self, name)
        return _function(where) if where else None

    def ignored(self, path: Path) -> frozenset[str]:
        """The generation fields a model of this family ignores (its call leaves them out)."""
        if self.guidance == "none":
            return frozenset({"guidance_scale"})
        ignores = self.hook("ignores")
        return ignores(Path(path)) if ignores is not None else frozenset()


@functools.cache
def _function(where: str) -> Callable[..., Any]:
    """The function "module:function" under genbatch.pipelines names (looked up once)."""
    import importlib

    module, function = where.split(":")
    return getattr(importlib.import_module(f"genbatch.pipelines.{module}"), function)
