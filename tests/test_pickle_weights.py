"""Pickled weights are not loaded unless asked for. A ``.bin`` written by ``torch.save`` is a
pickle, and unpickling one can run any code it names; genbatch loads .safetensors only, refuses
a .bin LoRA when it resolves the run's LoRAs (located at its manifest cell, or at --lora) and a
model folder whose weights are .bin only before it loads, and ``--allow-pickle`` lets a user load
pickles they trust. The payload here writes a marker file if anything ever unpickles it."""

from __future__ import annotations

import json
import pathlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST, genbatch, images, pixels
from test_lora import make_lora


class WritesMarker:
    """Unpickled, this object writes ``marker``: what a hostile .bin would do with a shell instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.marker), "unpickled"))


def hostile_bin(path: Path, marker: Path) -> Path:
    """A torch.save state dict whose value runs code on load; checked to be live first."""
    import torch

    torch.save({"weight": WritesMarker(marker)}, path)
    probe = path.with_name("probe-marker")
    torch.save({"weight": WritesMarker(probe)}, path.with_name("probe.bin"))
    torch.load(path.with_name("probe.bin"), weights_only=False)  # a plain unpickle runs it
    assert probe.read_text() == "unpickled"
    return path


def one_row(tmp_path: Path, lora: str | None = None) -> Path:
    manifest = tmp_path / "one.csv"
    manifest.write_text(
        "prompt,seed" + (",lora" if lora else "") + "\na red circle,7" + (f",{lora}" if lora else "") + "\n"
    )
    return manifest


def test_a_bin_lora_is_refused_at_its_cell_or_at_lora_and_never_unpickled(tmp_path):
    marker = tmp_path / "marker"
    bin_lora = hostile_bin(tmp_path / "style.bin", marker)
    manifest = one_row(tmp_path, "style.bin:0.8")
    out = tmp_path / "out"

    for args in (["run", manifest, "--out", out, *FAST], ["run", manifest, "--out", out, *FAST, "--dry-run"]):
        result = genbatch(*args)
        assert result.exit_code == 2, result.output
        assert f"{manifest}:2:lora: LoRA 'style.bin': style.bin is a pickle (torch.save)" in result.output
        assert "--allow-pickle" in result.output and "Traceback" not in result.output
    checked = genbatch("validate", manifest)
    assert checked.exit_code == 2 and f"{manifest}:2:lora: LoRA 'style.bin': style.bin is a pickle" in checked.output

    option = genbatch("run", one_row(tmp_path), "--out", out, *FAST, "--lora", bin_lora)
    assert option.exit_code == 2
    assert option.output.startswith(f"error: --lora: LoRA '{bin_lora}': style.bin is a pickle")
    assert not out.exists() and not marker.exists()


@pytest.fixture(scope="module")
def ink(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora(tiny_model, tmp_path_factory.mktemp("loras") / "ink", 1)


def test_allow_pickle_applies_a_bin_lora_as_its_safetensors_twin(tmp_path, ink):
    import torch
    from safetensors.torch import load_file

    twin = tmp_path / "bin" / "ink.bin"
    twin.parent.mkdir()
    torch.save(load_file(ink), twin)
    manifest = one_row(tmp_path)
    safe, pickled = tmp_path / "safe", tmp_path / "pickled"
    assert genbatch("run", manifest, "--out", safe, *FAST, "--lora", f"{ink}:0.8").exit_code == 0
    result = genbatch("run", manifest, "--out", pickled, *FAST, "--lora", f"{twin}:0.8", "--allow-pickle")
    assert result.exit_code == 0, result.output
    assert np.array_equal(pixels(images(pickled)[0]), pixels(images(safe)[0]))
    assert json.loads((pickled / "run.json").read_text())["settings"]["backend_options"]["allow_pickle"] is True
    assert json.loads((safe / "run.json").read_text())["settings"]["backend_options"]["allow_pickle"] is False


def bin_unet_folder(tiny_model: Path, folder: Path, weights) -> Path:
    """tiny-random with its UNet's weights as unet/diffusion_pytorch_model.bin only."""
    shutil.copytree(tiny_model, folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    weights(folder / "unet" / "diffusion_pytorch_model.bin")
    return folder


def test_a_model_folder_with_pickled_weights_only_is_refused_before_it_loads(tmp_path, tiny_model):
    marker = tmp_path / "marker"
    folder = bin_unet_folder(tiny_model, tmp_path / "pickled-model", lambda path: hostile_bin(path, marker))
    result = genbatch("run", one_row(tmp_path), "--out", tmp_path / "out", *FAST[2:], "--model", folder)
    assert result.exit_code == 2, result.output
    assert (
        f"error: {folder}: unet/diffusion_pytorch_model.bin is a pickle (torch.save) with no .safetensors file "
        "beside it; a pickle can run code when it is loaded, so genbatch loads .safetensors weights only"
    ) in result.output
    assert "or pass --allow-pickle if you trust it" in result.output
    assert not marker.exists()


def test_allow_pickle_loads_a_folder_of_pickled_weights(tmp_path, tiny_model):
    import torch
    from safetensors.torch import load_file

    unet = load_file(tiny_model / "unet" / "diffusion_pytorch_model.safetensors")
    folder = bin_unet_folder(tiny_model, tmp_path / "pickled-model", lambda path: torch.save(unet, path))
    manifest = one_row(tmp_path)
    plain, pickled = tmp_path / "plain", tmp_path / "pickled"
    assert genbatch("run", manifest, "--out", plain, *FAST).exit_code == 0
    result = genbatch("run", manifest, "--out", pickled, *FAST[2:], "--model", folder, "--allow-pickle")
    assert result.exit_code == 0, result.output
    assert np.array_equal(pixels(images(pickled)[0]), pixels(images(plain)[0]))
