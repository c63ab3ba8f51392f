"""CogView4: classifier-free guidance with a negative prompt; a GLM-4 text encoder.

CogView4's pipeline pads a batch's token ids on the left to its longest prompt (then to a
multiple of 16) and runs the text encoder with no attention mask, and its transformer attends
to every text token: in plain diffusers, the other prompts of a batch change an image. An
image alone gets its prompt's tokens padded to the next multiple of 16 (``[gMASK]<sop>`` and
the prompt, at least 16 tokens). So genbatch encodes each distinct prompt by itself with the
pipeline's own ``encode_prompt`` (:func:`encode`), which is exactly what plain diffusers gives
that prompt alone, and a pipeline call only takes prompts whose embeddings are equally long
(:func:`batch_parts` splits a batch so; a longer embedding would be other tokens the image
attends to, so padding one cannot keep its image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genbatch.pipelines.families.base import Family
from genbatch.pipelines.model_files import read_json

COGVIEW4 = Family(
    "cogview4",
    "CogView4",
    ("CogView4Pipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=50,
    guidance_scale=3.5,
    size=1024,
    max_sequence_length=True,
    notes=(
        "each prompt encoded alone (a batch groups prompts whose embeddings are equally long), "
        "so a batch never changes an image; sizes multiples of 16 (the model card: 512 to 2048, "
        "multiples of 32, at most 2^21 pixels)"
    ),
    guidance_meaning="classifier-free guidance; 1 or less turns it off (the model card uses 3.5)",
    size_problem="families.cogview4:size_problem",
    batch_parts="families.cogview4:batch_parts",
    encode="families.cogview4:encode",
)

DEFAULT_MAX_SEQUENCE_LENGTH = 1024  # CogView4Pipeline.__call__'s
DEFAULT_GUIDANCE = 5.0  # CogView4Pipeline.__call__'s, where a call names none
PAD_MULTIPLE = 16  # _get_glm_embeds pads the token ids on the left to a multiple of this


def _guided(call: dict[str, Any]) -> bool:
    """Whether the pipeline runs classifier-free guidance (and so encodes negative prompts)."""
    guidance = call.get("guidance_scale")
    return float(DEFAULT_GUIDANCE if guidance is None else guidance) > 1


def encode(pipe: Any, jobs: Sequence[Any], call: dict[str, Any]) -> dict[str, Any]:
    """``call`` with its prompts (and negative prompts, where guidance runs) replaced by
    ``prompt_embeds`` / ``negative_prompt_embeds``, each row the pipeline's own ``encode_prompt``
    of that one text, so each image gets the embedding plain diffusers gives its prompt alone.
    Each distinct text is encoded once.

    The rows of one call must be equally long; a batch whose aren't is refused with a
    ValueError (:func:`batch_parts` cuts a batch into calls that are)."""
    import torch

    call = dict(call)
    prompts: list[str] = list(call.pop("prompt"))
    negatives: list[str] | None = call.pop("negative_prompt", None)
    length = call.get("max_sequence_length") or DEFAULT_MAX_SEQUENCE_LENGTH
    device = pipe._execution_device
    made: dict[str, Any] = {}

    def embedding(text: str) -> Any:
        if text not in made:
            made[text] = pipe.encode_prompt(
                prompt=text,
                do_classifier_free_guidance=False,
                num_images_per_prompt=1,
                device=device,
                max_sequence_length=length,
            )[0]
        return made[text]

    with torch.inference_mode():
        call["prompt_embeds"] = _stacked([embedding(p) for p in prompts], "prompts")
        if _guided(call):  # the pipeline's own: no negative prompt is the empty one
            texts = [n or "" for n in negatives] if negatives is not None else [""] * len(prompts)
            call["negative_prompt_embeds"] = _stacked([embedding(n) for n in texts], "negative prompts")
    return call


def _stacked(rows: list[Any], what: str) -> Any:
    import torch

    lengths = sorted({row.shape[1] for row in rows})
    if len(lengths) > 1:
        raise ValueError(
            f"CogView4: one pipeline call cannot take {what} of different token lengths "
            f"({', '.join(map(str, lengths))}) without changing their images; run them in separate "
            "batches (genbatch.pipelines.families.cogview4.batch_parts)"
        )
    return torch.cat(rows)


def embedding_length(tokenizer: Any, text: str, max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH) -> int:
    """How many tokens long the pipeline's embedding of ``text`` alone is: its tokens (with
    the tokenizer's own prefix, at most ``max_sequence_length``), padded up to a multiple of 16."""
    count = len(tokenizer(text, max_length=max_sequence_length, truncation=True, add_special_tokens=True).input_ids)
    return count + (-count) % PAD_MULTIPLE


def batch_parts(pipe: Any, jobs: Sequence[Any]) -> list[list[Any]]:
    """A batch's jobs (that share settings) cut into the pipeline calls :func:`encode` can make:
    jobs whose prompts' embeddings are equally long, and, where guidance runs, their negative
    prompts' too; each part in order of its first job, jobs in order within it."""
    parts: dict[tuple[int, int], list[Any]] = {}
    for job in jobs:
        length = job.values.get("max_sequence_length") or DEFAULT_MAX_SEQUENCE_LENGTH
        guided = _guided({"guidance_scale": job.guidance_scale})
        key = (
            embedding_length(pipe.tokenizer, job.prompt, length),
            embedding_length(pipe.tokenizer, job.negative_prompt or "", length) if guided else 0,
        )
        parts.setdefault(key, []).append(job)
    return list(parts.values())


def size_problem(path: Path, width: int, height: int) -> str | None:
    """Why CogView4 cannot make ``width`` x ``height``, or None: the pipeline takes multiples
    of 16 only (and of the VAE's scale times the transformer's patch, 16 in the released model)."""
    vae = read_json(Path(path) / "vae" / "config.json")
    transformer = read_json(Path(path) / "transformer" / "config.json")
    scale = 2 ** (len(vae.get("block_out_channels") or [0, 0, 0, 0]) - 1)
    step = math.lcm(PAD_MULTIPLE, scale * int(transformer.get("patch_size") or 2))
    if width % step or height % step:
        return f"CogView4 makes sizes in multiples of {step} only, not {width}x{height}"
    return None
