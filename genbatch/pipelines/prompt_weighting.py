"""Prompt weighting in AUTOMATIC1111's syntax: ``(word:1.3)``, ``(word)`` (x1.1), ``[word]`` (/1.1).

Off by default (``--prompt-weighting off``), so prompts reach the pipeline as they are
written. With ``--prompt-weighting a1111`` (or a ``prompt_weighting`` column) each prompt is
split into weighted fragments by :func:`parse` and turned into embeddings by ``compel``
(a maintained library; ``pip install 'genbatch[lora]'``), which the pipeline then takes as
``prompt_embeds``. ``\\(`` and ``\\)`` are literal brackets. Prompts are cut at the text
encoder's 77 tokens, as diffusers cuts unweighted ones, so an image stays the same alone or
in a batch. The weights are applied the way compel applies them, so images are not
pixel-identical to A1111's, which scales embeddings its own way.

Runs on Stable Diffusion 1.x/2.x pipelines; other families are refused before any model
loads, with a message.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from typing import Any

from genbatch.errors import GenbatchError

ROUND, SQUARE = 1.1, 1 / 1.1
SUPPORTED = ("StableDiffusionPipeline",)
_TOKEN = re.compile(r"\\.|\(|\[|:\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)\s*\)|\)|\]|[^\\()\[\]:]+|:|\\")
_COMPEL: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class PromptWeightingError(GenbatchError):
    """Prompt weighting asked of a model, or an install, that cannot do it."""


def parse(text: str) -> list[tuple[str, float]]:
    """A prompt in A1111 syntax -> (text, weight) fragments, neighbours of equal weight merged.

    ``(a b)`` multiplies the weight of what it holds by 1.1, ``[a b]`` divides it by 1.1,
    ``(a b:0.7)`` multiplies it by 0.7; brackets nest; a bracket left open applies to the
    end of the prompt; a closing bracket with no opening one, and ``:`` not followed by a
    number and ``)``, are plain text."""
    pieces: list[list[Any]] = []
    stacks: dict[str, list[int]] = {"(": [], "[": []}

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token in stacks:
            stacks[token].append(len(pieces))
        elif token.startswith(":") and token.endswith(")") and stacks["("]:
            scale(stacks["("].pop(), float(token[1:-1]))
        elif token == ")" and stacks["("]:
            scale(stacks["("].pop(), ROUND)
        elif token == "]" and stacks["["]:
            scale(stacks["["].pop(), SQUARE)
        else:
            pieces.append([token, 1.0])
    for start in stacks["("]:
        scale(start, ROUND)
    for start in stacks["["]:
        scale(start, SQUARE)
    merged: list[list[Any]] = []
    for text_, weight in pieces:
        if merged and abs(merged[-1][1] - weight) < 1e-9:
            merged[-1][0] += text_
        else:
            merged.append([text_, weight])
    fragments = [(t.strip(), round(w, 6)) for t, w in merged if t.strip()]
    return fragments or [("", 1.0)]


def supports(pipeline_class: str) -> bool:
    return pipeline_class in SUPPORTED


def check_model(pipeline_class: str, model_name: str) -> None:
    """Refuse, before any model loads, a model or an install that cannot weight prompts."""
    if not supports(pipeline_class):
        raise PromptWeightingError(
            f"{model_name}: prompt weighting runs on {', '.join(SUPPORTED)} models; "
            f"{pipeline_class} is not one: run it with --prompt-weighting off"
        )
    try:
        import compel  # noqa: F401
    except ImportError:
        raise PromptWeightingError(
            "--prompt-weighting a1111 needs the compel package: pip install 'genbatch[lora]' (or pip install compel)"
        ) from None


def weighted_call(pipe: Any, jobs: Sequence[Any], call: dict[str, Any]) -> dict[str, Any]:
    """``call`` (the pipeline's arguments) with its prompts turned into weighted embeddings when
    the batch's jobs ask for it; unchanged otherwise."""
    if not getattr(jobs[0], "values", {}).get("prompt_weighting"):
        return call
    if not supports(type(pipe).__name__):
        raise PromptWeightingError(f"prompt weighting runs on {', '.join(SUPPORTED)} models, not {type(pipe).__name__}")
    call = dict(call)
    call["prompt_embeds"] = _embeddings(pipe, call.pop("prompt"))
    if call.get("negative_prompt") is not None:
        call["negative_prompt_embeds"] = _embeddings(pipe, call.pop("negative_prompt"))
    return call


def _embeddings(pipe: Any, prompts: Sequence[str]) -> Any:
    import torch
    from compel.prompt_parser import Conjunction, FlattenedPrompt

    compel = _compel(pipe)
    tensors = []
    for prompt in prompts:
        conjunction = Conjunction([FlattenedPrompt(parse(prompt))])
        conditioning, _ = compel.build_conditioning_tensor_for_conjunction(conjunction)
        tensors.append(conditioning)
    return torch.cat(tensors)


def _compel(pipe: Any) -> Any:
    found = _COMPEL.get(pipe)
    if found is None:
        from compel import Compel

        found = Compel(
            tokenizer=pipe.tokenizer,
            text_encoder=pipe.text_encoder,
            truncate_long_prompts=True,
            dtype_for_device_getter=lambda device: pipe.text_encoder.dtype,
        )
        _COMPEL[pipe] = found
    return found
