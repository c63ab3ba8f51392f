"""Prompt-embedding reuse: each distinct text-encoder input is encoded once per loaded model.

A batch's prompts reach the pipeline as ``prompt_embeds`` / ``negative_prompt_embeds`` (and
the pooled embeddings where the family has them: SDXL, SD3, Flux), made by the pipeline's own
``encode_prompt`` (or by compel, for weighted prompts), so the pipeline does exactly what it
does for prompts. A small LRU on the device, bounded by count and bytes, keeps them across
batches: eight seeds of one prompt are one encode. A batch's new inputs are encoded
together, in one call, as the pipeline encodes a batch (rows are independent; across batch
shapes float maths may differ in the last bit, the tolerance the seed contract allows). The
key is everything that changes an embedding: the prompt and negative prompt, whether
guidance runs, clip skip, ``max_sequence_length``, the LoRA set and the prompt weighting.
The cache belongs to one loaded model (:class:`~genbatch.backends.torch_backend.TorchGenerator`),
so the model is implied.

Families with no entry in :data:`ENCODERS` (PixArt, Sana, the generic path) get their prompts
as before.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_ENTRIES = 256
DEFAULT_MAX_BYTES = 512 * 2**20

Entry = tuple[Any, ...]  # one image's tensors (leading dimension 1), in the order of its family's names


@dataclass(frozen=True)
class Encoder:
    """How a family's pipeline turns prompts into the call's embedding arguments."""

    names: tuple[str, ...]  # the pipeline arguments, in the order ``encode`` returns them
    encode: Callable[..., tuple[Any, ...]]  # (pipe, prompts, negatives, cfg, clip_skip, length) -> tensors
    cfg: Callable[[Any, float], bool]  # whether guidance runs (so negative embeddings are needed)


def _unet_cfg(pipe: Any, guidance: float) -> bool:
    return guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None


def _clip(pipe: Any, prompts: list[str], negatives: list[str] | None, cfg: bool, clip_skip: Any, length: Any) -> Any:
    """SD's and SDXL's ``encode_prompt`` (the same keywords; SDXL adds the pooled embeddings)."""
    return pipe.encode_prompt(
        prompt=prompts,
        device=pipe._execution_device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=cfg,
        negative_prompt=negatives,
        clip_skip=clip_skip,
    )


def _sd3(pipe: Any, prompts: list[str], negatives: list[str] | None, cfg: bool, clip_skip: Any, length: Any) -> Any:
    return pipe.encode_prompt(
        prompt=prompts,
        prompt_2=None,
        prompt_3=None,
        device=pipe._execution_device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=cfg,
        negative_prompt=negatives,
        clip_skip=clip_skip,
        max_sequence_length=length or 256,
    )


def _flux(pipe: Any, prompts: list[str], negatives: list[str] | None, cfg: bool, clip_skip: Any, length: Any) -> Any:
    embeds, pooled, _text_ids = pipe.encode_prompt(
        prompt=prompts, prompt_2=None, device=pipe._execution_device, max_sequence_length=length or 512
    )
    return embeds, pooled


_POOLED = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
ENCODERS: dict[str, Encoder] = {
    "sd": Encoder(("prompt_embeds", "negative_prompt_embeds"), _clip, _unet_cfg),
    "sdxl": Encoder(_POOLED, _clip, _unet_cfg),
    "sd3": Encoder(_POOLED, _sd3, lambda pipe, guidance: guidance > 1),
    "flux": Encoder(("prompt_embeds", "pooled_prompt_embeds"), _flux, lambda pipe, guidance: False),
}


def _nbytes(entry: Entry) -> int:
    return sum(t.numel() * t.element_size() for t in entry if t is not None)


class EmbeddingCache:
    """Embeddings of the text-encoder inputs seen last (least recently used dropped first)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.entries: OrderedDict[tuple[Any, ...], Entry] = OrderedDict()
        self.bytes = 0
        self.encodes = 0  # distinct inputs encoded: one each while it stays cached
        self.encoder_calls = 0  # encode_prompt calls: one per batch with new inputs
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def stats(self) -> dict[str, int]:
        return {
            "encodes": self.encodes,
            "encoder_calls": self.encoder_calls,
            "hits": self.hits,
            "misses": self.misses,
            "entries": len(self.entries),
        }

    def _put(self, key: tuple[Any, ...], entry: Entry) -> None:
        self.entries[key] = entry
        self.bytes += _nbytes(entry)
        while self.entries and (len(self.entries) > self.max_entries or self.bytes > self.max_bytes):
            _, dropped = self.entries.popitem(last=False)
            self.bytes -= _nbytes(dropped)

    def call(
        self, pipe: Any, family: str, jobs: Sequence[Any], call: dict[str, Any], clip_skip: int | None = None
    ) -> dict[str, Any]:
        """``call`` (the pipeline's arguments for ``jobs``, prompts as lists) with its prompts
        replaced by embeddings; unchanged for a family with no encoder here. ``clip_skip`` is
        diffusers' (A1111's minus one)."""
        weighted = bool(jobs[0].values.get("prompt_weighting"))
        encoder = ENCODERS.get(family)
        if encoder is None and not weighted:
            return call
        call = dict(call)
        prompts: list[str] = call.pop("prompt")
        negatives: list[str] | None = call.pop("negative_prompt", None)
        first = jobs[0]
        length = first.values.get("max_sequence_length")
        cfg = encoder.cfg(pipe, float(call.get("guidance_scale") or 0.0)) if encoder else True
        common = (cfg, clip_skip, length, _lora_key(first.values.get("lora")), weighted)
        keys = [(p, negatives[i] if negatives else None, *common) for i, p in enumerate(prompts)]
        missing = list(dict.fromkeys(k for k in keys if k not in self.entries))
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        names = encoder.names if encoder else ("prompt_embeds", "negative_prompt_embeds")
        found = {key: self.entries[key] for key in keys if key in self.entries}
        for key in found:
            self.entries.move_to_end(key)
        if missing:
            self.encodes += len(missing)
            self.encoder_calls += 1 if encoder and not weighted else len(missing)
            made = self._encode(pipe, encoder, jobs, missing)
            for key, entry in zip(missing, made):
                found[key] = entry
                self._put(key, entry)
        return {**call, **_stacked(names, [found[key] for key in keys])}

    def _encode(
        self, pipe: Any, encoder: Encoder | None, jobs: Sequence[Any], missing: list[tuple[Any, ...]]
    ) -> list[Entry]:
        """The tensors of each missing input, one row each. A batch's new inputs go through the
        text encoder together, as the pipeline would encode them (one call, not one per
        prompt: on a GPU, thirty-two batch-1 encoder passes cost more than the UNet's step);
        weighted prompts go through compel one at a time."""
        import torch

        _prompt, negative, cfg, clip_skip, length, _lora, weighted = missing[0]
        prompts = [key[0] for key in missing]
        negatives = None if negative is None else [key[1] for key in missing]
        with torch.inference_mode():
            if encoder is None or weighted:  # prompt weighting (genbatch.pipelines.prompt_weighting, compel)
                from genbatch.pipelines.prompt_weighting import weighted_call

                names = ("prompt_embeds", "negative_prompt_embeds")
                made = [
                    weighted_call(pipe, jobs, {"prompt": [p], "negative_prompt": None if negatives is None else [n]})
                    for p, n in zip(prompts, negatives or prompts)
                ]
                return [tuple(one.get(name) for name in names) for one in made]
            tensors = encoder.encode(pipe, prompts, negatives, cfg, clip_skip, length)
            # one row each, copied: an entry must not keep the whole batch's storage alive
            return [tuple(None if t is None else t[i : i + 1].clone() for t in tensors) for i in range(len(missing))]


def _stacked(names: tuple[str, ...], rows: list[Entry]) -> dict[str, Any]:
    import torch

    stacked: dict[str, Any] = {}
    for n, name in enumerate(names):
        parts = [row[n] for row in rows]
        if all(p is not None for p in parts):
            stacked[name] = torch.cat(parts)
    return stacked


def _lora_key(value: Any) -> str:
    if not value:
        return ""
    from genbatch.pipelines.lora import key_form

    return json.dumps(key_form(value))
