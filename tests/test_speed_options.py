"""The speed options of the torch backend (--cache, --cache-threshold, --quantize, --compile
regional, --attention): recorded with every image, in the job key where they change pixels,
refused before any model loads where they cannot run, and measured against the exact images.

The figures are those of the tiny Flux pipeline at 8 steps and 32x32 (tiny_family("flux")),
whose images move a few levels when a step is skipped; docs/speed.md states them."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from helpers import genbatch, images, ledger, pixels
from PIL import Image

import genbatch as library

PROMPTS = "prompt,seed\na red circle,1\ntwo squares,2\na blue triangle,3\n"


def by_seed(out):
    return {record["seed"]: pixels(out / record["file"]) for record in ledger(out) if record["status"] == "done"}


def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def largest_difference(run, reference):
    """max |d| over every image of two runs, and the PSNR of their pixels (dB)."""
    seeds = sorted(reference)
    assert sorted(run) == seeds
    first, second = np.stack([run[s] for s in seeds]), np.stack([reference[s] for s in seeds])
    return int(np.abs(first - second).max()), psnr(first, second)


@pytest.fixture
def flux(tiny_family, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text(PROMPTS, encoding="utf-8")

    def run(out, *args):
        result = genbatch("run", manifest, "--model", tiny_family("flux"), "--steps", "8", "--out", out, "-q", *args)
        assert result.exit_code == 0, result.output
        return by_seed(out)

    return run


def test_a_step_cache_is_recorded_keyed_and_a_bounded_distance_from_the_exact_images(flux, tmp_path):
    exact = flux(tmp_path / "exact")
    cached = flux(tmp_path / "cached", "--cache", "first-block", "--cache-threshold", "0.5")
    # The cache skipped work (the images moved), and not far: max 3 levels, PSNR 51 dB measured.
    most, db = largest_difference(cached, exact)
    assert 1 <= most <= 8 and db >= 40, (most, db)

    records = ledger(tmp_path / "cached")
    assert {(r["cache"], r["cache_threshold"]) for r in records} == {("first-block", 0.5)}
    assert all("cache" not in r and "cache_threshold" not in r for r in ledger(tmp_path / "exact"))
    with Image.open(tmp_path / "cached" / records[0]["file"]) as image:
        assert json.loads(image.info["genbatch"])["cache"] == "first-block"
    run = json.loads((tmp_path / "cached" / "run.json").read_text())
    assert run["settings"]["defaults"]["cache"] == "first-block"
    assert run["settings"]["defaults"]["cache_threshold"] == 0.5

    # A first-block cache decides per batch, from the whole batch's residual: an image may not be
    # exactly the one it is alone (measured here: batch 3 vs 1, max 0 levels at this threshold).
    alone = flux(tmp_path / "alone", "--cache", "first-block", "--cache-threshold", "0.5", "--batch-size", "1")
    assert largest_difference(cached, alone)[0] <= 2


def test_cached_and_exact_images_are_other_jobs_and_a_rerun_of_either_finds_its_own_done(flux, tmp_path):
    out = tmp_path / "out"
    flux(out)
    flux(out, "--cache", "first-block")  # not done by the exact images: 3 more
    assert len(images(out)) == 6
    found = sorted((r.get("cache") or "", r.get("cache_threshold") or 0) for r in ledger(out))
    assert found == [("", 0)] * 3 + [("first-block", 0.05)] * 3  # the default threshold is recorded, and keyed
    model = ledger(out)[0]["model_path"]

    def to_generate(*args):
        planned = genbatch(
            "run", tmp_path / "p.csv", "--model", model, "--steps", "8", "--out", out, *args, "--dry-run", "--json"
        )
        assert planned.exit_code == 0, planned.output
        return json.loads(planned.stdout)["counts"]["to_generate"]

    assert to_generate() == to_generate("--cache", "none") == 0
    assert (
        to_generate("--cache", "first-block") == to_generate("--cache", "first-block", "--cache-threshold", "0.05") == 0
    )
    assert to_generate("--cache", "first-block", "--cache-threshold", "0.3") == 3
    assert to_generate("--cache", "taylorseer") == 3


@pytest.mark.parametrize("cache", ["taylorseer", "magcache", "faster"])
def test_each_cache_of_diffusers_runs_recorded_and_near_the_exact_images(flux, tmp_path, cache):
    exact = flux(tmp_path / "exact")
    cached = flux(tmp_path / cache, "--cache", cache)
    most, db = largest_difference(cached, exact)
    # measured: taylorseer max 1 (56.8 dB), magcache 3 (53.0 dB), faster 1 (61.8 dB)
    assert 1 <= most <= 8 and db >= 40, (most, db)
    threshold = {"magcache": 0.06}.get(cache)  # the caches without a threshold record none
    assert {(r["cache"], r.get("cache_threshold")) for r in ledger(tmp_path / cache)} == {(cache, threshold)}
    alone = flux(tmp_path / "alone", "--cache", cache, "--batch-size", "1")
    assert largest_difference(cached, alone)[0] <= 2  # measured: taylorseer 1, magcache 0, faster 1


def test_int8_weights_are_recorded_keyed_and_a_bounded_distance_from_the_exact_images(flux, tmp_path):
    pytest.importorskip("torchao")
    exact = flux(tmp_path / "exact")
    quantized = flux(tmp_path / "int8", "--quantize", "int8")
    most, db = largest_difference(quantized, exact)
    assert 1 <= most <= 8 and db >= 40, (most, db)  # measured: max 1, 57.9 dB
    records = ledger(tmp_path / "int8")
    assert {r["quantize"] for r in records} == {"int8"} and len(
        {r["key"] for r in records} & {r["key"] for r in ledger(tmp_path / "exact")}
    ) == 0
    run = json.loads((tmp_path / "int8" / "run.json").read_text())
    assert run["backend_facts"]["quantize"] == run["settings"]["backend_options"]["quantize"] == "int8"
    with Image.open(tmp_path / "int8" / records[0]["file"]) as image:
        assert json.loads(image.info["genbatch"])["quantize"] == "int8"
    alone = flux(tmp_path / "alone", "--quantize", "int8", "--batch-size", "1")
    assert largest_difference(quantized, alone)[0] == 0  # weight-only int8 is batch-invariant here


def refused(tiny_family, tmp_path, family, *args):
    manifest = tmp_path / "p.csv"
    manifest.write_text(PROMPTS, encoding="utf-8")
    out = tmp_path / "refused"
    began = time.monotonic()
    result = genbatch("run", manifest, "--model", tiny_family(family), "--out", out, *args)
    assert result.exit_code == 2, result.output
    assert not images(out) and time.monotonic() - began < 30
    return result.stderr


def test_options_a_model_device_or_install_cannot_take_are_refused_before_any_model_loads(tiny_family, tmp_path):
    unet = refused(tiny_family, tmp_path, "sd", "--cache", "first-block")
    assert "--cache: SD 1.x/2.x's unet (UNet2DConditionModel) takes no --cache first-block" in unet
    assert "models that take it: Flux.1," in unet
    sd3 = refused(tiny_family, tmp_path, "sd3", "--cache", "taylorseer")
    assert "SD3/3.5's transformer (SD3Transformer2DModel) takes no --cache taylorseer" in sd3
    # Chroma's transformer has the cache hooks, but its pipeline does not mark the denoiser's calls
    # (cond, uncond), and it guides with two calls a step, which FasterCache would mix
    chroma = refused(tiny_family, tmp_path, "chroma", "--cache", "first-block")
    assert "ChromaPipeline does not tell diffusers' cache hooks which denoiser call they are in" in chroma
    assert "call its denoiser twice a step" in refused(tiny_family, tmp_path, "chroma", "--cache", "faster")
    assert "which diffusers has for Flux.1 only" in refused(tiny_family, tmp_path, "chroma", "--cache", "magcache")
    threshold = refused(tiny_family, tmp_path, "flux", "--cache", "taylorseer", "--cache-threshold", "0.2")
    assert "--cache-threshold: --cache taylorseer takes no threshold (first-block and magcache do)" in threshold
    assert "expected first-block or taylorseer or magcache or faster or none" in refused(
        tiny_family, tmp_path, "flux", "--cache", "fast"
    )
    assert "--cache-threshold: cache_threshold 2 is out of range; expected a number from 0 to 1" in refused(
        tiny_family, tmp_path, "flux", "--cache", "first-block", "--cache-threshold", "2"
    )

    fp8 = refused(tiny_family, tmp_path, "flux", "--quantize", "fp8")
    assert "--quantize fp8 runs on a CUDA GPU of compute capability 8.9 or newer, not on cpu" in fp8
    assert "--quantize int4 runs on a CUDA GPU" in refused(tiny_family, tmp_path, "flux", "--quantize", "int4")
    nf4 = refused(tiny_family, tmp_path, "flux", "--quantize", "nf4")
    assert "--quantize nf4 needs bitsandbytes" in nf4 or "--quantize nf4 runs on a CUDA GPU" in nf4

    regional = refused(tiny_family, tmp_path, "sd3", "--compile", "regional")
    assert "--compile regional: SD3/3.5's transformer (SD3Transformer2DModel) names no repeated blocks" in regional

    unknown = refused(tiny_family, tmp_path, "flux", "--attention", "warp")
    assert "--attention warp: diffusers" in unknown and "has no attention backend of that name" in unknown
    assert "accepted here: sdpa, " in unknown and "native" in unknown
    flash = refused(tiny_family, tmp_path, "flux", "--attention", "flash")
    assert "--attention flash: " in flash and "accepted here: sdpa" in flash


def test_a_cache_column_is_checked_at_its_row(tiny_family, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,cache\na red circle,first-block\ntwo squares,none\n", encoding="utf-8")
    checked = genbatch("validate", manifest, "--model", tiny_family("sd"))
    assert checked.exit_code == 2
    assert (
        f"{manifest}:2:cache: SD 1.x/2.x's unet (UNet2DConditionModel) takes no --cache first-block" in checked.stdout
    )
    assert ":3:" not in checked.stdout


def test_regional_compile_runs_is_recorded_and_keeps_the_pixels(tiny_family, tmp_path):
    # torch.compile's "eager" backend traces each repeated block as inductor would, without
    # generating kernels (inductor takes minutes on a CPU); the pixels stay those of eager mode.
    manifest = tmp_path / "p.csv"
    manifest.write_text(PROMPTS, encoding="utf-8")

    def run(out, steps=2, cache=None, **torch_options):
        defaults = library.Defaults(steps=steps, cache=cache, cache_threshold=0.5 if cache else None)
        options = library.RunOptions(
            library.InputOptions(str(manifest)),
            library.OutputOptions(out, html_report=False),
            library.PlanOptions(model=str(tiny_family("flux")), defaults=defaults),
            torch=library.TorchOptions(**torch_options),
            quiet=True,
        )
        assert library.run(options).exit_code == 0  # every image made
        return json.loads((out / "run.json").read_text())

    plain = run(tmp_path / "plain")
    compiled = run(tmp_path / "regional", compile="regional", compile_backend="eager")
    assert compiled["backend_facts"]["compile"] == "regional" and plain["backend_facts"]["compile"] is None
    most, _ = largest_difference(by_seed(tmp_path / "regional"), by_seed(tmp_path / "plain"))
    assert most <= 1
    # A step cache decides outside the compiled graph (its hooks are torch.compiler.disable'd):
    # the regional blocks take it (as --speed fast does on CUDA), and the cached pixels stay.
    run(tmp_path / "cached", steps=8, cache="first-block")
    run(tmp_path / "cached-regional", steps=8, cache="first-block", compile="regional", compile_backend="eager")
    assert largest_difference(by_seed(tmp_path / "cached-regional"), by_seed(tmp_path / "cached"))[0] <= 1
