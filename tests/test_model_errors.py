"""A model that cannot run is reported against what named it (``--model`` or the row's ``model``
cell), with the pipeline class and why, before any model loads."""

from __future__ import annotations

import importlib.util
import json

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
    folder = model_folder(tmp_path, "StableVideoDiffusionPipeline")

    for command in (["run", manifest, "--out", tmp_path / "o", "--dry-run"], ["validate", manifest]):
        result = genbatch(*command, "--model", folder)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"--model {folder.name}: StableVideoDiffusionPipeline is not a text-to-image pipeline" in result.stderr
        assert "problem" not in result.stderr and f"{manifest}:2" not in result.stderr


def test_a_model_cell_is_still_reported_at_its_row(tmp_path):
    folder = model_folder(tmp_path, "StableVideoDiffusionPipeline")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"prompt,model\na red circle,{folder}\n", encoding="utf-8")
    result = genbatch("validate", manifest)
    assert result.exit_code == 2
    assert f"{manifest}:2:model: {folder.name}: StableVideoDiffusionPipeline is not" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("sentencepiece") is not None, reason="sentencepiece is installed here")
def test_a_pipeline_whose_package_is_missing_names_the_package(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt\na red circle\n", encoding="utf-8")
    result = genbatch(
        "run", manifest, "--out", tmp_path / "o", "--dry-run", "--model", model_folder(tmp_path, "KolorsPipeline")
    )
    assert result.exit_code == 2
    assert "KolorsPipeline needs the Python package sentencepiece, which is not installed here" in result.stderr
    assert "pip install sentencepiece" in result.stderr
