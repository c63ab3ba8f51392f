"""A model that cannot run is reported against what named it (``--model`` or the row's ``model``
cell), with the pipeline class and why, before any model loads."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from helpers import genbatch


def model_folder(tmp_path, class_name: str):
    folder = tmp_path / class_name
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}), encoding="utf-8")
    return folder


def test_a_model_given_by_option_is_reported_against_the_option_not_a_manifest_line(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt\na red circle\n", encoding="utf-8")
    folder = model_folder(tmp_path, "HunyuanVideoPipeline")

    for command in (["run", manifest, "--out", tmp_path / "o", "--dry-run"], ["validate", manifest]):
        result = genbatch(*command, "--model", folder)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"--model {folder.name}: HunyuanVideoPipeline is not a text-to-image pipeline" in result.stderr
        assert "problem" not in result.stderr and f"{manifest}:2" not in result.stderr


def test_a_model_cell_is_still_reported_at_its_row(tmp_path):
    folder = model_folder(tmp_path, "HunyuanVideoPipeline")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"prompt,model\na red circle,{folder}\n", encoding="utf-8")
    result = genbatch("validate", manifest)
    assert result.exit_code == 2
    assert f"{manifest}:2:model: {folder.name}: HunyuanVideoPipeline is not" in result.stdout


# genbatch's CLI in a Python where sentencepiece cannot be imported, as on a machine without it
WITHOUT_SENTENCEPIECE = """
import importlib.util, sys
found = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] == "sentencepiece" else found(name, *a)
from genbatch.cli.app import main
sys.argv = ["genbatch", *sys.argv[1:]]
main()
"""


def test_a_pipeline_whose_package_is_missing_names_the_package(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt\na red circle\n", encoding="utf-8")
    folder = model_folder(tmp_path, "KolorsPipeline")
    args = ["run", str(manifest), "--out", str(tmp_path / "o"), "--dry-run", "--model", str(folder)]
    result = subprocess.run([sys.executable, "-c", WITHOUT_SENTENCEPIECE, *args], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "KolorsPipeline needs the Python package sentencepiece, which is not installed here" in result.stderr
    assert "pip install sentencepiece" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_a_component_whose_package_is_missing_is_named_with_the_component(tmp_path):
    # FLUX.2-dev's tokenizer slot holds a PixtralProcessor, which needs torchvision (not installed here)
    index = {
        "_class_name": "Flux2Pipeline",
        **{c: ["diffusers", "AutoencoderKLFlux2"] for c in ("transformer", "vae", "text_encoder", "scheduler")},
        "tokenizer": ["transformers", "PixtralProcessor"],
    }
    folder = tmp_path / "flux2-dev"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt\na red circle\n", encoding="utf-8")
    result = genbatch("validate", manifest, "--model", folder)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        "--model flux2-dev: Flux2Pipeline's tokenizer (PixtralProcessor) needs the Python package torchvision, "
        "which is not installed here: pip install torchvision"
    ) in result.output
