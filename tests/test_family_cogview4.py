"""CogView4 (tiny build, genbatch.pipelines.tiny_builds.cogview4): the family contract, and a
batch that never changes an image although CogView4's own batch encoding would (prompts of
different token lengths padded together, no attention mask)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from family_contract import PROMPTS, SENSITIVE, check_family_contract, moves

from genbatch.pipelines.families import BY_NAME, detect, read_defaults
from genbatch.pipelines.families.cogview4 import COGVIEW4, batch_parts, embedding_length, encode, size_problem

STEPS, SIZE = 2, 32
SETTINGS = {"num_inference_steps": STEPS, "height": SIZE, "width": SIZE, "guidance_scale": 3.5}
CALL = {"prompt": "a red circle", **SETTINGS}


@pytest.fixture(scope="module")
def folder(tiny_family) -> Path:
    return tiny_family("cogview4")


@pytest.fixture(scope="module")
def pipe(folder: Path):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe, seeds: list[int], **call) -> list[np.ndarray]:
    out = pipe(
        **{**SETTINGS, **call},
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
        output_type="np",
    )
    return [(image * 255).round().astype(np.int16) for image in out.images]


def _job(prompt: str, seed: int, negative: str | None = None, guidance: float = 3.5) -> SimpleNamespace:
    return SimpleNamespace(prompt=prompt, seed=seed, negative_prompt=negative, guidance_scale=guidance, values={})


def test_the_tiny_build_moves_with_prompt_negative_prompt_and_guidance(folder: Path) -> None:
    """Its text reaches the image (the builder scales the text projection and the modulation)."""
    prompt = moves(folder, CALL, {"prompt": "two blue squares"})
    negative = moves(folder, CALL, {"negative_prompt": "ugly"})
    guidance = moves(folder, CALL, {"guidance_scale": 1.0})
    print(f"\nfigures: cogview4 sensitivity: prompt {prompt}, negative prompt {negative}, guidance 3.5 vs 1 {guidance}")
    assert min(prompt, negative, guidance) >= SENSITIVE


def test_contract(folder: Path, tmp_path: Path) -> None:
    assert detect(folder) is COGVIEW4 is BY_NAME["cogview4"]
    defaults = read_defaults(folder)
    assert (defaults["width"], defaults["height"]) == (SIZE, SIZE)
    # the contract's prompts differ in length: each a CogView4 embedding of its own length
    assert len({embedding_length(_tokenizer(folder), p) for p, _ in PROMPTS}) == 3
    check_family_contract(folder, "cogview4", {}, tmp_path, steps=STEPS)


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder / "tokenizer")


def test_a_batch_of_prompts_of_different_lengths_gives_each_prompt_alone(pipe) -> None:
    """Plain diffusers' batch changes images (its prompts padded together, no mask); genbatch's
    encoding, in the parts batch_parts makes, gives each image plain diffusers' single-prompt one."""
    rows = [*PROMPTS, ("a red square", 14)]  # the last as long as the first
    alone = {s: _images(pipe, [s], prompt=p)[0] for p, s in rows}
    together = _images(pipe, [s for _, s in rows], prompt=[p for p, _ in rows])
    plain_batch = max(int(np.abs(image - alone[s]).max()) for image, (_, s) in zip(together, rows))
    assert plain_batch > 10  # the problem genbatch solves is there in this build

    jobs = [_job(p, s) for p, s in rows]
    parts = batch_parts(pipe, jobs)
    assert [[j.seed for j in part] for part in parts] == [[11, 14], [12], [13]]
    worst = 0
    for part in parts:
        call = encode(pipe, part, {**SETTINGS, "prompt": [j.prompt for j in part]})
        assert "prompt" not in call and "negative_prompt" not in call
        images = _images(pipe, [j.seed for j in part], **call)
        worst = max(worst, *(int(np.abs(image - alone[j.seed]).max()) for image, j in zip(images, part)))
    print(f"\nfigures: cogview4 four prompts: plain diffusers' batch vs alone {plain_batch}, genbatch's parts {worst}")
    assert worst <= 1


def test_negative_prompts_are_encoded_alone_too(pipe) -> None:
    rows = [("a red circle", 11, "ugly"), ("a red square", 14, "blurry and dark, low quality")]
    alone = {s: _images(pipe, [s], prompt=p, negative_prompt=n)[0] for p, s, n in rows}
    jobs = [_job(p, s, n) for p, s, n in rows]
    parts = batch_parts(pipe, jobs)
    assert [[j.seed for j in part] for part in parts] == [[11], [14]]  # the negatives' lengths differ
    for part in parts:
        call = encode(
            pipe,
            part,
            {**SETTINGS, "prompt": [j.prompt for j in part], "negative_prompt": [j.negative_prompt for j in part]},
        )
        (image,) = _images(pipe, [part[0].seed], **call)
        assert np.abs(image - alone[part[0].seed]).max() <= 1
    # without guidance no negative prompt is encoded, so it does not split a batch
    unguided = [_job(p, s, n, guidance=1.0) for p, s, n in rows]
    assert [[j.seed for j in part] for part in batch_parts(pipe, unguided)] == [[11, 14]]
    call = encode(pipe, unguided, {**SETTINGS, "guidance_scale": 1.0, "prompt": [p for p, _, _ in rows]})
    assert "negative_prompt_embeds" not in call and call["prompt_embeds"].shape[0] == 2


def test_one_call_refuses_embeddings_of_different_lengths(pipe) -> None:
    jobs = [_job(p, s) for p, s in PROMPTS]
    with pytest.raises(ValueError, match="different token lengths"):
        encode(pipe, jobs, {**CALL, "prompt": [p for p, _ in PROMPTS]})


def test_each_distinct_text_is_encoded_once(pipe, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = pipe.encode_prompt

    def counting(**kwargs):
        seen.append(kwargs["prompt"])
        return original(**kwargs)

    monkeypatch.setattr(pipe, "encode_prompt", counting)
    jobs = [_job("a red circle", s) for s in (1, 2, 3)]
    call = encode(pipe, jobs, {**CALL, "prompt": [j.prompt for j in jobs]})
    assert sorted(seen) == ["", "a red circle"] and call["prompt_embeds"].shape[0] == 3


def test_the_tokenizer_prefixes_gmask_sop_so_an_empty_prompt_encodes(pipe) -> None:
    ids = pipe.tokenizer("").input_ids
    assert pipe.tokenizer.convert_ids_to_tokens(ids) == ["[gMASK]", "<sop>"]
    assert embedding_length(pipe.tokenizer, "") == 16
    assert embedding_length(pipe.tokenizer, "x" * 14) == 16 and embedding_length(pipe.tokenizer, "x" * 15) == 32
    assert embedding_length(pipe.tokenizer, "x" * 100, max_sequence_length=20) == 32


def test_size_problem(folder: Path) -> None:
    assert size_problem(folder, 32, 48) is None
    assert size_problem(folder, 1024, 1024) is None
    assert "multiples of 16" in (size_problem(folder, 40, 32) or "")
    assert "40x24" in (size_problem(folder, 40, 24) or "")
