"""What only a CUDA GPU can show: the seed contract against plain diffusers on the same GPU,
the uint8 rounding done on the GPU, and a real ``torch.OutOfMemoryError`` halving a batch.
Skipped where torch sees no CUDA device (CI); ``benchmarks/gpu_figures.sh`` runs them on a
lent GPU machine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import diffusers_images, genbatch, ledger, pixels

from genbatch.backends.base import tensor_to_uint8, to_uint8

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = ["--device", "cuda", "--dtype", "fp32", "--quiet"]
PROMPTS = [("a red circle", 11), ("two blue squares", 12), ("a green triangle left of a cross", 13)]


def by_seed(out):
    return {r["seed"]: pixels(out / r["file"]) for r in ledger(out) if r["status"] == "done"}


@pytest.mark.parametrize(
    "tiny, extra", [("sd", {}), ("sdxl", {}), ("flux", {"max_sequence_length": 32})], ids=["sd", "sdxl", "flux"]
)
def test_same_seed_same_image_as_plain_diffusers_on_the_same_gpu(tiny, extra, tiny_family, tmp_path):
    folder = tiny_family(tiny)
    manifest = tmp_path / "prompts.csv"
    manifest.write_text("prompt,seed\n" + "".join(f"{p},{s}\n" for p, s in PROMPTS), encoding="utf-8")
    result = genbatch("run", manifest, "--model", folder, "--steps", "2", "-b", "3", "--out", tmp_path / "b3", *CUDA)
    assert result.exit_code == 0, result.output
    records = ledger(tmp_path / "b3")
    assert [r["status"] for r in records] == ["done"] * 3
    assert json.loads((tmp_path / "b3" / "run.json").read_text())["backend_facts"]["gpu"]
    alone = genbatch("run", manifest, "--model", folder, "--steps", "2", "-b", "1", "--out", tmp_path / "b1", *CUDA)
    assert alone.exit_code == 0, alone.output

    batched, single = by_seed(tmp_path / "b3"), by_seed(tmp_path / "b1")
    plain = diffusers_images(folder, records, extra, device="cuda")
    torch.cuda.empty_cache()
    batch_delta = max(int(np.abs(batched[s] - single[s]).max()) for s in batched)
    plain_delta = max(int(np.abs(batched[s] - plain[s]).max()) for s in batched)
    print(f"\nfigures: {tiny} on cuda: batch 3 vs 1 max |d| {batch_delta}, vs plain diffusers max |d| {plain_delta}")
    assert batch_delta <= 2 and plain_delta <= 2
    assert np.abs(batched[11] - batched[12]).max() > 10  # not blanks


def test_uint8_made_on_the_gpu_is_the_host_arithmetic_byte_for_byte():
    floats = torch.rand(5, 3, 64, 48, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    floats[1, :, 3, 4] = float("nan")
    floats[2] = 0.0  # all black
    floats[3] = 0.4 / 255.0  # rounds to 0: black too
    on_gpu, gpu_errors = tensor_to_uint8(floats.cuda())
    on_host, host_errors = to_uint8(floats.permute(0, 2, 3, 1).numpy())
    assert gpu_errors == host_errors and [e is None for e in gpu_errors] == [True, False, False, False, True]
    for a, b in zip(on_gpu, on_host):
        assert (a is None and b is None) or (a.dtype == b.dtype == np.uint8 and np.array_equal(a, b))


def test_a_batch_that_does_not_fit_is_halved_on_a_real_cuda_out_of_memory(tiny_family, tmp_path, monkeypatch):
    monkeypatch.setenv("GENBATCH_HOME", str(tmp_path / "home"))  # no size remembered from other tests
    folder = tiny_family("sd")
    manifest = tmp_path / "prompts.txt"
    manifest.write_text("".join(f"prompt {i}\n" for i in range(8)), encoding="utf-8")
    size = ["--model", folder, "--steps", "2", "--width", "1024", "--height", "1024", *CUDA]

    def peak_reserved(out, batch):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        result = genbatch("run", manifest, "--out", tmp_path / out, "-b", str(batch), *size)
        assert result.exit_code == 0, result.output
        return torch.cuda.max_memory_reserved()

    one, eight = peak_reserved("b1", 1), peak_reserved("b8", 8)
    per_image = (eight - one) / 7
    assert per_image > 16 * 2**20, (one, eight)  # far above the allocator's rounding
    cap = one + 3.5 * per_image  # room for a batch of 4, not 8
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        result = genbatch("run", manifest, "--out", tmp_path / "capped", "-b", "8", "--json", *size)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    sizes = {r["batch_size"] for r in ledger(tmp_path / "capped")}
    print(
        f"\nfigures: peak reserved {one / 2**20:.0f} MiB at batch 1, {eight / 2**20:.0f} MiB at 8; "
        f"capped at {cap / 2**20:.0f} MiB: ran at {sorted(sizes)}"
    )
    assert summary["counts"]["done"] == 8 and len(sizes) == 1 and max(sizes) < 8
    assert list(summary["batch_sizes"]["used"].values()) == list(sizes)
    alone, halved = by_seed(tmp_path / "b1"), by_seed(tmp_path / "capped")
    assert alone.keys() == halved.keys() and max(int(np.abs(alone[s] - halved[s]).max()) for s in alone) <= 2
    remembered = json.loads((tmp_path / "home" / "batch-sizes.json").read_text())
    assert [entry["fits"] for entry in remembered.values()] == list(sizes)
