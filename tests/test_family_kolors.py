"""Kolors (KolorsPipeline) as a first-class family: a ChatGLM3 text encoder, whose tokenizer
needs sentencepiece, and an SDXL-like UNet with real classifier-free guidance. The family
contract with and without a negative prompt column, on a tiny build that responds to its
prompt, negative prompt and guidance; without sentencepiece, a run names the package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from family_contract import SENSITIVE, check_family_contract, moves
from helpers import genbatch

from genbatch.pipelines.families import BY_NAME, detect, empty_negative_matters, family_defaults

EXTRA = {"max_sequence_length": 64}  # the tiny model's genbatch.json (its ChatGLM tokens are characters)
NEGATIVE = "blurry, ugly"


@pytest.fixture(scope="module")
def kolors(tiny_family) -> Path:
    return tiny_family("kolors")


def test_the_tiny_build_responds_to_prompt_negative_prompt_and_guidance(kolors):
    call = {"prompt": "a red circle", "num_inference_steps": 2, "width": 64, "height": 64, "guidance_scale": 5.0}
    call.update(EXTRA)
    prompt = moves(kolors, call, {"prompt": "two blue squares"})
    negative = moves(kolors, call, {"negative_prompt": NEGATIVE})
    guidance = moves(kolors, call, {"guidance_scale": 2.0})
    none_vs_empty = moves(kolors, call, {"negative_prompt": ""})
    print(f"\nfigures: kolors moves: prompt {prompt}, negative {negative}, guidance {guidance}, '' {none_vs_empty}")
    assert min(prompt, negative, guidance) >= SENSITIVE
    # force_zeros_for_empty_prompt is false (the pipeline's default and Kolors-diffusers'):
    # no negative prompt is encoded as the empty one
    assert json.loads((kolors / "model_index.json").read_text())["force_zeros_for_empty_prompt"] is False
    assert none_vs_empty == 0
    assert not empty_negative_matters(kolors, BY_NAME["kolors"])


def test_family_contract(kolors, tmp_path):
    check_family_contract(kolors, "kolors", EXTRA, tmp_path)


def test_family_contract_with_a_negative_prompt_column(kolors, tmp_path):
    cells = (f',"{NEGATIVE}"',) * 3
    check_family_contract(
        kolors, "kolors", {**EXTRA, "negative_prompt": NEGATIVE}, tmp_path, columns=",negative_prompt", cells=cells
    )


def test_defaults_are_kolors_own(tmp_path):
    """A folder shaped like Kwai-Kolors/Kolors-diffusers (configs only): UNet sample_size 128,
    a 4-level VAE: 1024x1024 at 50 steps and guidance 5 (its model card's example)."""
    folder = tmp_path / "kolors-diffusers"
    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    index = {"_class_name": "KolorsPipeline", "force_zeros_for_empty_prompt": False}
    index.update({c: ["diffusers", "X"] for c in BY_NAME["kolors"].components})
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": 128}))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [128, 256, 512, 512]}))
    family = detect(folder)
    assert family.name == "kolors"
    assert family_defaults(folder, family) == {"steps": 50, "guidance_scale": 5.0, "width": 1024, "height": 1024}


def test_without_sentencepiece_a_run_names_the_package(kolors, tmp_path):
    """diffusers puts a placeholder in KolorsPipeline's place when sentencepiece is missing: a
    run says which package to install instead of refusing the model with no reason."""
    manifest = tmp_path / "p.txt"
    manifest.write_text("a red circle\n", encoding="utf-8")
    hidden = (
        "import sys; sys.modules['sentencepiece'] = None; "  # importlib.util.find_spec then finds none
        "from genbatch.cli.app import main; sys.argv = ['genbatch', *sys.argv[1:]]; main()"
    )
    command = [sys.executable, "-c", hidden, "run", str(manifest), "--model", str(kolors), "--out", str(tmp_path / "o")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "KolorsPipeline needs the Python package sentencepiece, which is not installed here" in result.stderr
    assert "pip install sentencepiece" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o" / "genbatch.jsonl").exists()


def test_a_max_sequence_length_over_256_is_refused_at_its_row(kolors, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,max_sequence_length\na red circle,300\n", encoding="utf-8")
    checked = genbatch("validate", manifest, "--model", kolors)
    assert checked.exit_code == 2
    assert "Kolors takes a max_sequence_length up to 256, not 300" in checked.stdout + checked.stderr
