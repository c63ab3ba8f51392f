"""genbatch bench and the released architectures with random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import genbatch, ledger, pixels
from PIL import Image

from genbatch.pipelines.architectures import build_pipeline, names, write_architecture
from genbatch.pipelines.families import detect
from genbatch.pipelines.model_lookup import resolve_model

# Parameters of the released models (millions): SD-1.5 UNet 860, SDXL UNet 2,567 and its
# OpenCLIP-G text encoder 695, Flux.1 transformer 11,901 (11.9 B) and T5-XXL encoder 4,762.
RELEASED = {
    "sd15": {"unet": 860, "vae": 84, "text_encoder": 123},
    "sdxl": {"unet": 2567, "vae": 84, "text_encoder": 123, "text_encoder_2": 695},
    "flux-schnell": {"transformer": 11901, "vae": 84, "text_encoder": 123, "text_encoder_2": 4762},
    "flux-dev": {"transformer": 11901, "vae": 84, "text_encoder": 123, "text_encoder_2": 4762},
}


@pytest.mark.parametrize("name", names())
def test_architectures_have_the_released_shapes(name, tmp_path):
    folder = write_architecture(name, tmp_path / name)
    assert detect(folder).name == {"sd15": "sd", "sdxl": "sdxl", "flux-schnell": "flux", "flux-dev": "flux"}[name]
    assert not list(folder.rglob("*.safetensors"))  # configs only: the weights are made on load
    pipe = build_pipeline(folder, "meta", "bf16")  # shapes only, no memory
    for part, millions in RELEASED[name].items():
        count = sum(p.numel() for p in getattr(pipe, part).parameters())
        assert abs(count / 1e6 - millions) / millions < 0.01, (part, count)
        assert next(getattr(pipe, part).parameters()).dtype.is_floating_point


@pytest.mark.parametrize("name", ["sd15", "flux-schnell"])
def test_a_random_architecture_folder_runs_like_any_model(name, tmp_path):
    folder = write_architecture(name, tmp_path / "model", tiny=True)
    manifest = tmp_path / "p.txt"
    manifest.write_text("a cat\na dog\n")
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, "--model", folder, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.png"))) == 2
    first = resolve_model(str(folder))
    assert first.fingerprint == resolve_model(str(folder)).fingerprint  # the weights come from seed 0


def test_nf4_makes_a_random_architecture_s_denoiser_bitsandbytes_4bit_layers(tmp_path):
    pytest.importorskip("bitsandbytes")  # --quantize nf4 (a GPU run: this checks the layers on the CPU)
    torch = pytest.importorskip("torch")
    pipe = build_pipeline(write_architecture("flux-dev", tmp_path / "m", tiny=True), "cpu", "fp32", quantize="nf4")
    linear = [m for m in pipe.transformer.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and {(type(m).__name__, m.weight.dtype) for m in linear} == {("Linear4bit", torch.uint8)}
    assert not [m for m in pipe.text_encoder_2.modules() if type(m).__name__ == "Linear4bit"]  # the denoiser only


@pytest.mark.slow  # five processes, each starting torch and diffusers (~10 s each on a quiet CPU)
def test_bench_command_compares_genbatch_with_the_plain_loop(tiny_model, tmp_path):
    out = tmp_path / "bench"
    result = genbatch(
        "bench", "--model", tiny_model, "--out", out, "--device", "cpu",
        "-b", "1", "-b", "2", "--images", "2", "--repeats", "1", "--steps", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ratio" in result.stdout and "wrote" in result.stdout
    found = json.loads((out / "bench.json").read_text())
    assert found["warm_up_seconds"] > 0  # one untimed process first
    assert [c["batch_size"] for c in found["cells"]] == [1, 2]
    for cell in found["cells"]:
        for side in ("genbatch", "plain"):
            assert cell[side]["images_per_s"] > 0 and cell[side]["peak_rss_mb"] > 100
            assert 0 < cell[side]["first_image_seconds"] < cell[side]["wall_seconds"]
        assert cell["ratio"] == pytest.approx(cell["genbatch"]["images_per_s"] / cell["plain"]["images_per_s"])
        extra = cell["genbatch"]["wall_seconds"] - cell["plain"]["wall_seconds"]  # both start the same libraries
        assert cell["overhead"] == pytest.approx(extra / cell["plain"]["model_seconds"])
        assert cell["genbatch"]["failed"] == 0
    assert Image.open(out / "bench.png").size[0] >= 600
    assert not [p for p in out.iterdir() if p.is_dir()]  # the measurements' images are gone


def test_bench_refuses_a_bad_option_in_one_line(tmp_path):
    result = genbatch("bench", "--compile", "fast", "--out", tmp_path)
    assert result.exit_code == 2
    assert "--compile 'fast': expected off, default" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # three processes, each starting torch and diffusers
def test_bench_gives_the_plain_loop_the_speed_options_by_hand_and_measures_it_without_them(tiny_family, tmp_path):
    out = tmp_path / "bench"
    result = genbatch(
        "bench", "--model", tiny_family("flux"), "--out", out, "--device", "cpu", "-b", "2", "--images", "2",
        "--repeats", "1", "--no-warm-up", "--cache", "first-block", "--cache-threshold", "0.5", "--quantize", "int8",
        "--vs", "plain", "--vs", "exact", "--keep-images",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ratio" in result.stdout and "gain" in result.stdout and "exact img/s" in result.stdout
    found = json.loads((out / "bench.json").read_text())
    speed = {"cache": "first-block", "cache_threshold": 0.5, "quantize": "int8"}
    assert found["vs"] == ["plain", "exact"] and found["speed_options"] == speed
    (cell,) = found["cells"]
    assert cell["genbatch"]["applied"] == {**speed, "compile": None}  # as genbatch recorded its images
    assert cell["plain"]["applied"] == {
        **speed,
        "calls": [
            "quantize_(pipe.transformer, Int8WeightOnlyConfig())",
            "pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.5))",
        ],
    }
    assert cell["exact"]["applied"] == {"calls": []}
    rate = {side: cell[side]["images_per_s"] for side in ("genbatch", "plain", "exact")}
    assert cell["ratio"] == pytest.approx(rate["genbatch"] / rate["plain"])
    assert cell["gain"] == pytest.approx(rate["genbatch"] / rate["exact"])
    # The same options by hand make genbatch's pixels (image i has seed i on both sides); without
    # them the images move (measured: 7 and 3 levels).
    kept = out / "images" / f"torch-{cell['size']}-b2"
    made = {record["seed"]: pixels(kept / "genbatch" / record["file"]) for record in ledger(kept / "genbatch")}
    assert sorted(made) == [0, 1]
    for seed, image in made.items():
        assert np.array_equal(image, pixels(kept / "plain" / f"{seed:06d}.png"))
    assert max(np.abs(image - pixels(kept / "exact" / f"{seed:06d}.png")).max() for seed, image in made.items()) > 0


def test_bench_refuses_speed_options_as_run_does_before_any_process(tiny_model, tmp_path):
    def refused(*args):
        result = genbatch("bench", "--model", tiny_model, "--device", "cpu", "--out", tmp_path / "b", *args)
        assert result.exit_code == 2 and "Traceback" not in result.stderr
        assert not list((tmp_path / "b").glob("bench.json")) and not list((tmp_path / "b").glob("tmp*"))
        return result.stderr

    assert "takes no --cache first-block (diffusers gives its step caches" in refused("--cache", "first-block")
    assert "--quantize fp8 runs on a CUDA GPU" in refused("--quantize", "fp8")
    assert "--cache: cache 'fast' is not accepted" in refused("--cache", "fast")
    assert "--vs exact measures the plain loop without the speed options" in refused("--vs", "exact")
    assert "--vs 'none', 'plain': expected plain, exact or both" in refused("--vs", "none", "--vs", "plain")
