"""A different IP-Adapter image per row: each image is the one plain diffusers makes with its
row's image alone (a list of a batch's images would be read as images of one row, each image
of the batch seeing all of them), the same alone or in a batch of 3, and the tiny adapters
(genbatch.pipelines.tiny_builds.ip_adapter) move it when the image or the scale changes. An
IP-Adapter image is checked like every input, before any model loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import genbatch, ledger, pixels
from image_inputs import shapes_image
from image_rows_contract import check_image_rows

STEPS = ("--steps", "3")
WEIGHTS = "ip-adapter.safetensors"


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("references")
    for n in range(3):
        shapes_image(64, n).save(folder / f"ref-{n}.png")
    shapes_image(64, 2).rotate(90).save(folder / "ref-3.png")  # another scene for the first row's swap
    return folder


def with_adapter(model: Path, adapter: Path, scale: float = 1.0):
    """Plain diffusers: the model's pipeline with the adapter loaded as diffusers' docs load it."""
    from diffusers import DiffusionPipeline

    def make():
        pipe = DiffusionPipeline.from_pretrained(model)
        pipe.load_ip_adapter(str(adapter), subfolder="", weight_name=WEIGHTS)
        pipe.set_ip_adapter_scale(scale)
        return pipe

    return make


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_each_row_is_conditioned_on_its_own_ip_adapter_image(tiny_family, references, family):
    model, adapter = tiny_family(family), tiny_family(f"{family}-ip-adapter")
    figures = check_image_rows(
        with_adapter(model, adapter),
        model,
        references,
        "prompt,ip_adapter_image,seed",
        [f"a red circle,ref-{n}.png,{n + 1}" for n in range(3)],
        run_args=(*STEPS, "--width", "64", "--height", "64", "--ip-adapter", str(adapter / WEIGHTS)),
        swaps={"ip_adapter_image": "ref-3.png"},
        name=f"ip-{family}",
    )
    assert figures["ip_adapter_image moves it"] >= 20


def test_the_scale_is_the_adapters_and_a_row_without_an_image_runs_without_it(tiny_family, references):
    model, adapter = tiny_family("sd"), tiny_family("sd-ip-adapter")
    manifest = references / "scales.csv"
    manifest.write_text(
        "prompt,ip_adapter_image,ip_adapter_scale,seed\n"
        "a red circle,ref-0.png,1.0,5\n"
        "a red circle,ref-0.png,0.0,5\n"
        "a red circle,,,5\n",
        encoding="utf-8",
    )
    out = references / "scales-out"
    common = ("--model", model, "--width", "64", "--height", "64", *STEPS)
    result = genbatch("run", manifest, "--out", out, *common, "--ip-adapter", adapter / WEIGHTS)
    assert result.exit_code == 0, result.output
    made = {(r.get("ip_adapter_scale"), r.get("ip_adapter")): pixels(out / r["file"]) for r in ledger(out)}
    full, zero, none = made[(1.0, str(adapter / WEIGHTS))], made[(0.0, str(adapter / WEIGHTS))], made[(None, None)]
    assert np.abs(full - zero).max() >= 20  # the scale reaches the adapter's attention
    assert np.abs(zero - none).max() <= 1  # at 0 the adapter adds nothing; the text-only row ran without it

    plain = genbatch("validate", manifest, "--model", model)
    assert plain.exit_code == 2
    assert "an IP-Adapter image needs an IP-Adapter: an ip_adapter column, or --ip-adapter" in plain.output


def test_ip_adapter_problems_are_found_before_any_model_loads(tiny_family, references, tmp_path):
    adapter = tiny_family("sd-ip-adapter")
    manifest = references / "one.csv"
    manifest.write_text("prompt,ip_adapter_image\na cat,ref-0.png\n", encoding="utf-8")

    def validate(model, ip_adapter):
        return genbatch("validate", manifest, "--model", model, "--set", f"ip_adapter={ip_adapter}")

    flux = validate(tiny_family("flux"), adapter / WEIGHTS)
    assert flux.exit_code == 2
    assert f"{manifest}:2:" in flux.output and "takes no IP-Adapter in genbatch (SD and SDXL models do)" in flux.output

    missing = validate(tiny_family("sd"), tmp_path / "nothing.safetensors")
    assert missing.exit_code == 2
    assert "no such file, and no such file in the local Hugging Face cache" in missing.output

    pickle = tmp_path / "ip-adapter_sd15.bin"
    pickle.write_bytes(b"\x80\x04")
    refused = validate(tiny_family("sd"), pickle)
    assert refused.exit_code == 2 and "loads an IP-Adapter's .safetensors file" in refused.output

    alone = tmp_path / "alone" / WEIGHTS
    alone.parent.mkdir()
    alone.write_bytes((adapter / WEIGHTS).read_bytes())
    no_encoder = validate(tiny_family("sd"), alone)
    assert no_encoder.exit_code == 2 and "its image encoder is not there" in no_encoder.output

    sdxl = validate(tiny_family("sd"), tiny_family("sdxl-ip-adapter") / WEIGHTS)
    assert sdxl.exit_code == 2
    assert "is made for a UNet of cross_attention_dim 16, and this model's is 8" in sdxl.output

    onnx = genbatch("run", manifest, "--out", tmp_path / "onnx", "--backend", "onnx", "--ip-adapter", adapter / WEIGHTS)
    assert onnx.exit_code == 2 and "ip adapter image needs --backend torch" in onnx.output

    broken = references / "broken.csv"
    broken.write_text("prompt,ip_adapter_image\na cat,nothing.png\n", encoding="utf-8")
    unreadable = genbatch("validate", broken, "--model", tiny_family("sd"), "--set", f"ip_adapter={adapter / WEIGHTS}")
    assert unreadable.exit_code == 2 and f"{broken}:2:" in unreadable.output and "nothing.png" in unreadable.output
