"""Flux.2: dev (Flux2Pipeline, a Mistral3 text encoder) and klein (Flux2KleinPipeline, a Qwen3
text encoder). Neither takes a negative prompt; the first positional argument of both calls
is an image, so the prompt goes by keyword (as every family's call does).

Flux.2-dev is guidance-distilled: guidance is an input of its transformer, one pass a step;
the family's 50 steps and guidance 4 are FLUX.2-dev's (its model card, the pipeline's call
defaults). Its prompt embedding stacks the hidden states of its Mistral3 encoder's layers 10,
20 and 30 (the call's ``text_encoder_out_layers`` default; Mistral Small 3.1 has 40 layers):
genbatch passes nothing, as plain diffusers. Nor does it pass ``caption_upsample_temperature``,
so the pipeline never rewrites a prompt with its encoder (caption upsampling stays off).

Flux.2-klein embeds no guidance. The base models (``is_distilled`` false in
model_index.json: FLUX.2-klein-base-4B/-9B) run real classifier-free guidance against an
empty prompt (the pipeline's own; it takes no other) above guidance 1, two passes a step,
at the pipeline's 50 steps and guidance 4. The step-distilled models (``is_distilled``
true: FLUX.2-klein-4B/-9B, run at 4 steps) ignore guidance: :func:`ignores` leaves it out
of their call. Klein's prompt embedding stacks the hidden states of its encoder's layers
9, 18 and 27 (the call's ``text_encoder_out_layers`` default), which is what the released
models' 36-layer Qwen3 encoders are made for: genbatch passes nothing, as plain diffusers.

Both pipelines round a size that is not a multiple of their VAE's downsampling x 2x2
patches (16) down, with a warning only: :func:`genbatch.pipelines.families.chroma.size_problem`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.families.base import Family
from genbatch.pipelines.model_files import read_json

FLUX2 = Family(
    "flux2",
    "Flux.2",
    ("Flux2Pipeline", "Flux2KleinPipeline"),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=50,
    guidance_scale=4.0,
    size=1024,
    negative_prompt=False,
    max_sequence_length=True,
    guidance="distilled",
    sample_size=128,
    ignores="families.flux2:ignores",
    model_defaults="families.flux2:model_defaults",
    size_problem="families.chroma:size_problem",
    guidance_meaning=(
        "dev: embedded guidance (guidance-distilled); klein: classifier-free guidance against an empty "
        "prompt, 1 or less off; distilled klein ignores it"
    ),
    negative_meaning="refused: the model takes none",
    notes="dev: guidance-distilled; klein: real guidance (base) or none (distilled, 4 steps); no negative prompt",
)


def ignores(path: Path) -> frozenset[str]:
    """``guidance_scale`` for a step-distilled Flux.2-klein (``is_distilled`` in its
    model_index.json: Flux2KleinPipeline then never guides); nothing for klein base or dev."""
    index = read_json(Path(path) / "model_index.json")
    if index.get("_class_name") == "Flux2KleinPipeline" and index.get("is_distilled"):
        return frozenset({"guidance_scale"})
    return frozenset()


def model_defaults(path: Path) -> dict[str, Any]:
    """A step-distilled Flux.2-klein runs at 4 steps and takes no guidance (its model card's settings)."""
    return {"steps": 4, "guidance_scale": 1.0} if ignores(path) else {}
