"""The shapes training recipe still runs end to end: training/train_shapes.py with the
recipe's config.json, shrunk (tiny widths, a couple of steps, a small scene cache), writes a
pipeline folder that diffusers loads and `genbatch run` generates with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import genbatch, images, ledger, pixels

ROOT = Path(__file__).resolve().parent.parent
CONFIG = json.loads((ROOT / "training" / "config.json").read_text(encoding="utf-8"))

# The recipe's config with every size cut down; every other setting (semantic latents,
# schedules, loss weights, defaults and own timesteps) is the recipe's.
TINY = {
    "threads": 1,
    "vae.steps": 2,
    "vae.batch_size": 4,
    "vae.block_out_channels": [4, 8, 16],
    "text_encoder.hidden_size": 16,
    "text_encoder.intermediate_size": 32,
    "text_encoder.num_attention_heads": 2,
    "unet.block_out_channels": [8, 16, 32],
    "unet.attention_head_dim": 2,
    "unet.addition_embed_type_num_heads": 2,
    "diffusion.cache_size": 16,
    "diffusion.steps": 3,
    "diffusion.batch_size": 4,
    "diffusion.warmup": 1,
    "diffusion.eval_every": 0,  # no learning curve: only the final weights are scored
    "diffusion.eval_n": 2,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("training") / "shapes"
    overrides = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "training/train_shapes.py", "--out", str(out), *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out, result.stdout


def test_recipe_writes_a_pipeline_folder_with_its_defaults(trained):
    out, log = trained

    assert {p.name for p in out.iterdir()} >= {
        "model_index.json",
        "genbatch.json",
        "unet",
        "vae",
        "text_encoder",
        "tokenizer",
        "scheduler",
    }
    assert not list(out.rglob("*.bin")), "weights must be safetensors"
    assert not out.with_name("shapes.tokenizer-tmp").exists()
    defaults = json.loads((out / "genbatch.json").read_text(encoding="utf-8"))
    assert defaults["guidance_scale"] == CONFIG["defaults"]["guidance_scale"]
    assert defaults["timesteps"] == CONFIG["defaults"]["timesteps"]
    assert defaults["width"] == defaults["height"] == 64
    unet = json.loads((out / "unet" / "config.json").read_text(encoding="utf-8"))
    assert unet["in_channels"] == CONFIG["vae"]["latent_channels"] and unet["block_out_channels"] == [8, 16, 32]
    assert log.count("eval on 2 held-out captions") == 1
    assert "diffusion step     2" in log


def test_trained_folder_loads_in_diffusers_and_generates_with_genbatch(trained, tmp_path: Path):
    from diffusers import StableDiffusionPipeline

    out, _ = trained
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert pipe.vae.config.latent_channels == CONFIG["vae"]["latent_channels"]
    assert pipe.scheduler.config.prediction_type == "v_prediction"

    manifest = tmp_path / "prompts.csv"
    manifest.write_text("prompt,seed\na red circle left of a blue square,1\n", encoding="utf-8")
    result = genbatch("run", manifest, "--out", tmp_path / "images", "--model", out, "--quiet")

    assert result.exit_code == 0, result.output
    [record] = ledger(tmp_path / "images")
    assert record["status"] == "done" and record["steps"] == 10 and record["guidance_scale"] == 1.5
    [image] = images(tmp_path / "images")
    assert pixels(image).shape == (64, 64, 3)
