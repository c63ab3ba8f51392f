"""Prompt-embedding reuse and the torch fast paths: the same image bytes with and without them,
each distinct text-encoder input encoded once, a compiled denoiser padded to a fixed batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genbatch.backends.torch_options import TorchOptions
from genbatch.plan.planner import Defaults, PlanOptions
from genbatch.runner.options import EngineOptions, InputOptions, OutputOptions, RunOptions
from genbatch.runner.run import run_manifest

PROMPTS = "prompt,negative_prompt,num_images\na red fox,blurry,5\na blue bird,,2\na red fox,,1\n"
FEW = "prompt,negative_prompt,num_images\na red fox,blurry,2\na blue bird,,1\na red fox,,1\n"


def _run(folder: Path, out: Path, manifest: Path, batch_size: int, **torch_options) -> dict[str, bytes]:
    options = RunOptions(
        InputOptions(str(manifest)),
        OutputOptions(out, html_report=False),
        PlanOptions(model=str(folder), defaults=Defaults(steps=2)),
        EngineOptions(device="cpu", batch_size=batch_size),
        TorchOptions(**torch_options),
        quiet=True,
    )
    assert run_manifest(options).exit_code == 0
    # the pixels' bytes (a PNG's metadata records each image's seconds, which differ)
    return {p.name: np.asarray(Image.open(p)).tobytes() for p in sorted(out.glob("*.png"))}


class _Count:
    """Runs of a text encoder class, whoever makes them (genbatch or the pipeline)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cls: type):
        self.calls = 0
        original = cls.forward

        def counted(model, *args, **kwargs):
            self.calls += 1
            return original(model, *args, **kwargs)

        monkeypatch.setattr(cls, "forward", counted)


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
def test_reused_embeddings_give_the_same_image_bytes(family, tiny_family, tmp_path):
    manifest = tmp_path / "prompts.csv"
    text = FEW if family != "flux" else FEW.replace("blurry", "")  # Flux takes no negative prompt
    manifest.write_text(text)
    folder = tiny_family(family)
    # batches of one: the pipeline encodes each prompt alone, as the cache does, so the
    # pixels match to the bit (cache hits across batches, negative prompts and none)
    reused = _run(folder, tmp_path / "on", manifest, 1)
    plain = _run(folder, tmp_path / "off", manifest, 1, reuse_embeddings=False)
    assert len(reused) == 4
    assert reused == plain
    run = json.loads((tmp_path / "on" / "run.json").read_text())
    assert run["backend_facts"]["reuse_embeddings"] is True


@pytest.mark.parametrize(
    "manifest_text, reused_passes, plain_passes",
    [
        # two batches of four, one prompt: one encode (the prompt, and the "" of guidance);
        # the pipeline alone encodes both once per batch
        ("prompt,num_images\na lighthouse at dusk,8\n", 2, 4),
        # four new prompts in one batch: the encoder runs on all four at once, and on their
        # four "" negatives at once, as the pipeline itself does; not once per prompt
        ("prompt\na red fox\na blue bird\na green frog\na white cat\n", 2, 2),
    ],
    ids=["eight-seeds-of-one-prompt", "a-batch-of-new-prompts"],
)
def test_text_encoder_passes(manifest_text, reused_passes, plain_passes, tiny_model, tmp_path, monkeypatch):
    from transformers import CLIPTextModel

    manifest = tmp_path / "prompts.csv"
    manifest.write_text(manifest_text)
    count = _Count(monkeypatch, CLIPTextModel)
    reused = _run(tiny_model, tmp_path / "on", manifest, 4)
    assert count.calls == reused_passes
    count.calls = 0
    plain = _run(tiny_model, tmp_path / "off", manifest, 4, reuse_embeddings=False)
    assert count.calls == plain_passes
    _within_one_level(reused, plain)


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
def test_mixed_batches_stay_within_the_batch_shape_tolerance(family, tiny_family, tmp_path):
    """Reused and new embeddings in one batch, every family's tensors (pooled ones too) split
    into rows and stacked again: within the tolerance test_reproducibility allows between
    batch sizes (CPU float maths can differ in the last bit between batch shapes)."""
    manifest = tmp_path / "prompts.csv"
    manifest.write_text(PROMPTS if family != "flux" else PROMPTS.replace("blurry", ""))
    folder = tiny_family(family)
    reused = _run(folder, tmp_path / "on", manifest, 3)
    plain = _run(folder, tmp_path / "off", manifest, 3, reuse_embeddings=False)
    assert len(reused) == 8
    _within_one_level(reused, plain)


def _within_one_level(first: dict[str, bytes], second: dict[str, bytes]) -> None:
    assert first.keys() == second.keys()
    for name in first:
        a, b = (np.frombuffer(x, np.uint8).astype(int) for x in (first[name], second[name]))
        assert np.abs(a - b).max() <= 1, name


def test_a_changed_clip_skip_is_encoded_again(tiny_model):
    import torch

    from genbatch.backends import BackendOptions
    from genbatch.backends.torch_backend import TorchBackend
    from genbatch.manifest.read import Row
    from genbatch.pipelines.model_lookup import resolve_model
    from genbatch.plan.planner import Target, expand_jobs

    model = resolve_model(str(tiny_model))
    rows = [Row(0, 2, {}, prompt="a cat", clip_skip=None), Row(1, 3, {}, prompt="a cat", clip_skip=2)]
    jobs = expand_jobs(rows, {None: model}, Defaults(steps=2), Target("torch", "fp32"))
    loaded = TorchBackend().load(model, BackendOptions("cpu", "fp32"))
    first, second = loaded.generate([jobs[0]]), loaded.generate([jobs[1]])
    again = loaded.generate([jobs[0]])
    assert loaded.embeddings.stats()["encodes"] == 2
    assert (first[0].pixels == again[0].pixels).all()
    assert not torch.equal(torch.from_numpy(first[0].pixels), torch.from_numpy(second[0].pixels))
    loaded.close()


def test_the_cache_is_bounded_by_count_and_bytes():
    import torch

    from genbatch.backends.prompt_embeds import EmbeddingCache

    cache = EmbeddingCache(max_entries=2, max_bytes=10_000)
    for n in range(3):
        cache._put((n,), (torch.zeros(1, 4),))
    assert list(cache.entries) == [(1,), (2,)]
    cache._put((3,), (torch.zeros(1, 2498),))  # 9,992 bytes: the others go
    assert list(cache.entries) == [(3,)] and cache.bytes == 9992


@pytest.mark.slow  # torch.compile traces the tiny UNet (dynamo, eager backend: ~10-20 s on a CPU)
def test_compiled_denoiser_pads_the_short_batch_and_never_recompiles(tiny_model, tmp_path):
    import torch._dynamo
    from torch._dynamo.utils import counters

    manifest = tmp_path / "seven.csv"
    manifest.write_text("prompt,num_images\na lighthouse,7\n")
    plain = _run(tiny_model, tmp_path / "plain", manifest, 4)
    torch._dynamo.reset()
    counters.clear()
    compiled = _run(tiny_model, tmp_path / "compiled", manifest, 4, compile="default", compile_backend="eager")
    # 4 + 3 padded to 4, the padding's image dropped: the full batch is the same to the bit,
    # the padded one within a level (a batch of 4 rather than 3: test_reproducibility's tolerance)
    first = sorted(plain)[:4]
    assert {n: compiled[n] for n in first} == {n: plain[n] for n in first}
    _within_one_level(compiled, plain)
    assert counters["stats"]["unique_graphs"] >= 1  # the denoiser was compiled...
    assert not counters["recompiles"]  # ...once: the short last batch ran at the first batch's shape
    run = json.loads((tmp_path / "compiled" / "run.json").read_text())
    assert run["backend_facts"]["compile"] == "default"


def test_run_options_for_the_fast_paths_are_recorded(tiny_model, tmp_path):
    from helpers import genbatch

    manifest = tmp_path / "p.txt"
    manifest.write_text("a cat\n")
    out = tmp_path / "out"
    result = genbatch(
        "run", manifest, "--model", tiny_model, "--out", out, "--device", "cpu", "--steps", "1", "--quiet",
        "--no-reuse-embeddings", "--channels-last", "on",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    facts = json.loads((out / "run.json").read_text())["backend_facts"]
    assert facts["reuse_embeddings"] is False and facts["channels_last"] is True
    assert facts["attention"] == "AttnProcessor2_0" and facts["compile"] is None
    bad = genbatch("run", manifest, "--out", out, "--channels-last", "maybe")
    assert bad.exit_code == 2 and "--channels-last 'maybe': expected auto, on, off" in bad.output
