"""LoRA per row (--lora, the lora column) and prompt weighting (--prompt-weighting), through
the CLI on the tiny test model, with tiny LoRAs made by peft."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST, genbatch, genbatch_process, ledger, pixels
from PIL import Image

from genbatch.pipelines import prompt_weighting
from genbatch.pipelines.lora import parse_specs


def make_lora(model: Path, folder: Path, seed: int) -> Path:
    """A rank-2 LoRA on the UNet's attention projections of ``model``, with random up weights
    (a fresh LoRA's are zero, which would change nothing), saved as diffusers saves LoRAs."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = StableDiffusionPipeline.from_pretrained(model)
    pipe.unet.add_adapter(
        LoraConfig(r=2, lora_alpha=2, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    torch.manual_seed(seed)
    for name, parameter in pipe.unet.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 1.0)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
    file = folder / f"{folder.name}.safetensors"
    (folder / "pytorch_lora_weights.safetensors").rename(file)
    return file


@pytest.fixture(scope="session")
def loras(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loras")
    return {name: make_lora(tiny_model, root / name, seed) for name, seed in (("ink", 1), ("glow", 2))}


@pytest.fixture
def load_counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times each LoRA file is loaded into a pipeline during the test."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    counts: dict[str, int] = {}
    original = StableDiffusionLoraLoaderMixin.load_lora_weights

    def counted(self, source, *args, **kwargs):
        counts[Path(source).name] = counts.get(Path(source).name, 0) + 1
        return original(self, source, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionLoraLoaderMixin, "load_lora_weights", counted)
    return counts


def by_lora(out: Path) -> dict[str, dict]:
    """Done ledger records by their LoRA set as text ("none" for none)."""
    found = {}
    for record in ledger(out):
        if record["status"] == "done":
            found["; ".join(f"{r['name']}:{r['weight']:g}" for r in record.get("lora", [])) or "none"] = record
    return found


def test_weight_zero_gives_the_base_pixels_and_a_weight_changes_them(tmp_path, loras):
    manifest = tmp_path / "one.csv"
    manifest.write_text("prompt,seed\na red circle,7\n", encoding="utf-8")
    out = tmp_path / "out"
    ink = loras["ink"]
    result = genbatch("run", manifest, "--out", out, *FAST, "--vary", f"lora=none,{ink}:0,{ink}:0.8")
    assert result.exit_code == 0, result.output
    records = by_lora(out)
    assert set(records) == {"none", "ink:0", "ink:0.8"}
    base, zero, weighted = (pixels(out / records[k]["file"]) for k in ("none", "ink:0", "ink:0.8"))
    assert np.array_equal(zero, base)  # the adapter is loaded, at weight 0: the base model's pixels
    assert np.abs(weighted - base).max() > 10
    assert records["ink:0.8"]["lora"] == [
        {
            "name": "ink",
            "weight": 0.8,
            "path": str(ink.resolve()),
            "fingerprint": records["ink:0"]["lora"][0]["fingerprint"],
        }
    ]
    assert len({r["key"] for r in records.values()}) == 3
    assert len({r["seed"] for r in records.values()}) == 1  # the varied copies of a row keep its seed
    with Image.open(out / records["ink:0.8"]["file"]) as image:
        assert image.text["parameters"].splitlines()[0] == "a red circle <lora:ink:0.8>"
    with Image.open(out / records["none"]["file"]) as image:
        assert image.text["parameters"].splitlines()[0] == "a red circle"
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["vary"] == [{"field": "lora", "values": ["none", f"{ink}:0", f"{ink}:0.8"]}]
    report = (out / "report.csv").read_text()
    assert "ink:0.8" in report and "ink:0," in report
    assert "ink:0.8" in (out / "report.html").read_text()


def test_two_sets_load_each_adapter_once_never_share_a_batch_and_resume(tmp_path, loras, load_counts):
    ink, glow = loras["ink"], loras["glow"]
    manifest = tmp_path / "sets.csv"
    manifest.write_text(
        "prompt,seed,lora\n"
        f"one,1,{ink.name}:0.5\n"
        f"two,2,{glow.name}\n"
        f"three,3,{ink.name}:1; {glow.name}:0.5\n"
        f"four,4,{ink.name}:0.5\n"
        "five,5,\n"
        "six,6,none\n",
        encoding="utf-8",
    )
    for file in (ink, glow):  # a relative path is found beside the manifest
        shutil.copy(file, tmp_path / file.name)
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, *FAST, "--lora", f"{glow.name}:0.3")
    assert result.exit_code == 0, result.output
    assert load_counts == {"ink.safetensors": 1, "glow.safetensors": 1}
    records = {r["prompt"]: r for r in ledger(out)}
    sets = {p: "; ".join(f"{x['name']}:{x['weight']:g}" for x in r.get("lora", [])) for p, r in records.items()}
    assert sets == {
        "one": "ink:0.5",
        "two": "glow:1",
        "three": "ink:1; glow:0.5",
        "four": "ink:0.5",
        "five": "glow:0.3",
        "six": "",
    }  # an empty cell takes --lora; "none" is none
    # A batch never mixes LoRA sets: the two ink:0.5 rows share one, every other set is alone.
    assert {p: r["batch_size"] for p, r in records.items()} == {
        "one": 2,
        "two": 1,
        "three": 1,
        "four": 2,
        "five": 1,
        "six": 1,
    }
    # Switching sets, and back to none, gives what a fresh pipeline gives: "six" (no LoRA) before
    # any LoRA is loaded, "four" alone in its batch.
    fresh = tmp_path / "fresh"
    again_rows = tmp_path / "again.csv"
    again_rows.write_text(f"prompt,seed,lora\nsix,6,\nfour,4,{ink}:0.5\n", encoding="utf-8")
    assert genbatch("run", again_rows, "--out", fresh, *FAST).exit_code == 0
    # ("four" was made in a batch of 2, here alone: within 1 level, the family contract's bound for
    # a batch on the CPU, where oneDNN's kernels for two shapes may round apart)
    for record in ledger(fresh):
        assert np.abs(pixels(fresh / record["file"]) - pixels(out / records[record["prompt"]]["file"])).max() <= 1
    # Resume: a rerun finds everything done and loads nothing.
    load_counts.clear()
    again = genbatch("run", manifest, "--out", out, *FAST, "--lora", f"{glow.name}:0.3", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"]["already_done"] == 6
    assert load_counts == {}


def test_lora_mistakes_are_one_line_before_any_model_loads(tmp_path, tiny_model, loras):
    manifest = tmp_path / "bad.csv"
    manifest.write_text("prompt,lora\nfine,\nmissing,nowhere.safetensors:0.5\n", encoding="utf-8")
    result = genbatch("run", manifest, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 2
    assert f"{manifest}:3:lora: LoRA 'nowhere.safetensors': no such file or folder" in result.output
    assert not (tmp_path / "out").exists()

    twice = genbatch("run", manifest, "--out", tmp_path / "out", *FAST, "--lora", f"{loras['ink']}; {loras['ink']}:2")
    assert twice.exit_code == 2 and "is given twice in one set" in twice.output

    onnx = genbatch(
        "run",
        manifest,
        "--out",
        tmp_path / "out",
        "--set",
        f"lora={loras['ink']}",
        "--backend",
        "onnx",
        "--model",
        "tiny-random",
        "--dry-run",
    )
    assert onnx.exit_code == 2 and "lora needs --backend torch" in onnx.output

    # A pipeline diffusers has no LoRA loader for is refused by name.
    pixart = tmp_path / "pixart"
    shutil.copytree(tiny_model, pixart)
    index = json.loads((pixart / "model_index.json").read_text())
    (pixart / "model_index.json").write_text(json.dumps(dict(index, _class_name="PixArtSigmaPipeline")))
    refused = genbatch(
        "run", manifest, "--out", tmp_path / "out", "--model", pixart, "--set", f"lora={loras['ink']}", "--dry-run"
    )
    assert refused.exit_code == 2 and "PixArtSigmaPipeline takes no LoRAs" in refused.output


def test_lora_specs_parse_as_a1111_users_write_them():
    assert [(s.source, s.weight) for s in parse_specs("style.safetensors:0.8; other:0.5")] == [
        ("style.safetensors", 0.8),
        ("other", 0.5),
    ]
    assert [(s.source, s.weight) for s in parse_specs("org/name")] == [("org/name", 1.0)]
    windows = r"C:\loras\a.safetensors"
    assert [(s.source, s.weight) for s in parse_specs(windows + ":-1")] == [(windows, -1.0)]
    assert parse_specs("none") == () == parse_specs(" ; ")
    with pytest.raises(ValueError, match="cannot be combined"):
        parse_specs("none; a")


# --- prompt weighting ------------------------------------------------------------------------


def test_a1111_weighting_syntax_parses_to_weighted_fragments():
    parse = prompt_weighting.parse
    assert parse("a (red:1.5) circle") == [("a", 1.0), ("red", 1.5), ("circle", 1.0)]
    assert parse("(big) [small]") == [("big", 1.1), ("small", round(1 / 1.1, 6))]
    assert parse("((two))") == [("two", 1.21)]
    assert parse(r"a \(literal\) bracket") == [("a (literal) bracket", 1.0)]
    assert parse("time: 10:30") == [("time: 10:30", 1.0)]
    assert parse("(open to the end") == [("open to the end", 1.1)]
    assert parse("") == [("", 1.0)]


def test_weighted_prompts_change_pixels_and_off_keeps_them(tmp_path):
    manifest = tmp_path / "weights.csv"
    manifest.write_text("prompt,seed\na (red:1.6) circle on [blue],3\n", encoding="utf-8")
    plain, weighted = tmp_path / "plain", tmp_path / "weighted"
    assert genbatch("run", manifest, "--out", plain, *FAST).exit_code == 0
    result = genbatch("run", manifest, "--out", weighted, *FAST, "--vary", "prompt_weighting=off,a1111")
    assert result.exit_code == 0, result.output
    records = {r.get("prompt_weighting", "off"): r for r in ledger(weighted)}
    assert set(records) == {"off", "a1111"}
    [plain_record] = ledger(plain)
    assert records["off"]["key"] == plain_record["key"]  # off is no option at all: same key, same pixels
    assert np.array_equal(pixels(weighted / records["off"]["file"]), pixels(plain / plain_record["file"]))
    assert np.abs(pixels(weighted / records["a1111"]["file"]) - pixels(plain / plain_record["file"])).max() > 0

    onnx = genbatch(
        "run",
        manifest,
        "--out",
        tmp_path / "o",
        "--model",
        "tiny-random",
        "--backend",
        "onnx",
        "--prompt-weighting",
        "a1111",
        "--dry-run",
    )
    assert onnx.exit_code == 2 and "prompt weighting needs --backend torch" in onnx.output
    bad = genbatch("run", manifest, "--out", tmp_path / "o", *FAST, "--prompt-weighting", "comfy")
    assert bad.exit_code == 2
    assert "--prompt-weighting: prompt_weighting 'comfy' is not accepted; expected a1111 or off" in bad.output


def test_validate_checks_a_lora_column_without_loading_a_model(tmp_path, loras):
    ink = loras["ink"]
    good = tmp_path / "good.csv"
    good.write_text(f"prompt,lora\none,{ink}:0.8\ntwo,none\nthree,\n", encoding="utf-8")
    result = genbatch("validate", good, "--model", "tiny-random")
    assert result.exit_code == 0, result.output
    assert "3 rows, 3 images, valid" in result.output

    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"prompt,lora\none,{ink}\ntwo,nowhere.safetensors:0.5\nthree,nowhere.safetensors\n", encoding="utf-8"
    )
    result = genbatch("validate", bad, "--model", "tiny-random")
    assert result.exit_code == 2
    assert f"{bad}:3:lora: LoRA 'nowhere.safetensors': no such file or folder" in result.output
    assert f"{bad}:4:lora: LoRA 'nowhere.safetensors': no such file or folder" in result.output
    assert f"{bad}:2:" not in result.output
    assert "Traceback" not in result.output


def finished(*args, timeout: float = 120):
    """(exit code, output) of the CLI as a process that must end within ``timeout`` seconds:
    a named pipe opened for reading would block it forever."""
    process = genbatch_process(*args)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"genbatch {' '.join(map(str, args))} did not end in {timeout}s (did it open a named pipe?)")
    return process.returncode, stdout + stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_lora_that_is_a_device_or_a_named_pipe_is_refused_and_never_opened(tmp_path):
    pipe = tmp_path / "style.safetensors"
    os.mkfifo(pipe)
    manifest = tmp_path / "odd.csv"
    manifest.write_text("prompt,lora\nnull,/dev/null:0.5\npipe,style.safetensors\n", encoding="utf-8")
    null = f"{manifest}:2:lora: LoRA '/dev/null': /dev/null is not a regular file (a character device)"
    named = f"{manifest}:3:lora: LoRA 'style.safetensors': {pipe} is not a regular file (a named pipe)"

    code, output = finished("validate", manifest, "--model", "tiny-random")
    assert code == 2 and null in output and named in output and "Traceback" not in output
    for extra in (["--dry-run"], []):
        code, output = finished("run", manifest, "--out", tmp_path / "out", *FAST, *extra)
        assert code == 2 and null in output and "Traceback" not in output
    plain = tmp_path / "plain.csv"
    plain.write_text("prompt\na red circle\n", encoding="utf-8")
    code, output = finished("run", plain, "--out", tmp_path / "out", *FAST, "--lora", pipe)
    assert code == 2 and f"error: --lora: LoRA '{pipe}': {pipe} is not a regular file (a named pipe)" in output
    assert not (tmp_path / "out").exists()
