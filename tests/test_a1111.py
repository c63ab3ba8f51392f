"""Coming from AUTOMATIC1111, ComfyUI or diffusers, through the CLI: A1111 prompt files and
sampler names, metadata other tools read back (sd-parsers), single-file checkpoints, --vae and
clip skip, messages and log lines, and the report's own manifest columns."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import FAST, genbatch, ledger, pixels
from PIL import Image
from safetensors.torch import load_file, save_file
from test_report_html import _open, browser  # noqa: F401  (the browser fixture)

from genbatch.manifest.a1111 import parse_parameters
from genbatch.progress import Progress

PROMPT_FILE = (
    '--prompt "a red circle, bold" --negative_prompt "blurry" --steps 3 --cfg_scale 7 --seed 42 '
    '--sampler_name "DPM++ 2M Karras" --n_iter 2 --batch_size 3\n'
    "a plain prompt line\n"
    "--prompt 'café' --styles \"noir\" --width 72 --height 56 --seed -1 --sd_model tiny-random\n"
    "\n"
    "--prompt 'two' --restore_faces true --styles x\n"
)


def dry_run(manifest: Path, out: Path, *options: str) -> dict:
    result = genbatch("run", manifest, "--out", out, "--model", "tiny-random", "--dry-run", "--json", *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- A1111 prompt files ------------------------------------------------------------------------


def test_a1111_prompt_file_lines_map_onto_fields(tmp_path):
    manifest = tmp_path / "prompts.txt"
    manifest.write_text(PROMPT_FILE, encoding="utf-8")
    validate = genbatch("validate", manifest)
    assert validate.exit_code == 0, validate.output
    assert "read as A1111 prompts-from-file lines" in validate.stderr
    # options with no meaning here: a warning naming FILE:LINE, not an error
    assert (
        f"warning: {manifest}:3: --styles has no meaning in genbatch and is ignored (also on 1 more line)"
        in validate.stderr
    )
    assert f"{manifest}:5: --restore_faces has no meaning" in validate.stderr

    jobs = dry_run(manifest, tmp_path / "out")["jobs"]
    first = [j for j in jobs if j["prompt"] == "a red circle, bold"]
    assert len(first) == 6  # n_iter 2 x batch_size 3
    assert [j["seed"] for j in first] == [42, 43, 44, 45, 46, 47]
    assert (first[0]["negative_prompt"], first[0]["steps"], first[0]["guidance_scale"]) == ("blurry", 3, 7.0)
    assert first[0]["scheduler"] == "DPMSolverMultistepScheduler"
    assert json.loads(first[0]["scheduler_options"]) == {"use_karras_sigmas": True}
    plain = next(j for j in jobs if j["prompt"] == "a plain prompt line")
    assert plain["scheduler"] == "DDIMScheduler" and "scheduler_options" not in plain
    cafe = next(j for j in jobs if j["prompt"] == "café")
    assert (cafe["width"], cafe["height"]) == (72, 56) and cafe["seed"] != -1  # -1: a derived seed

    # the same file read as plain text: each whole line is a prompt
    plain_text = genbatch("validate", manifest, "--format", "txt")
    assert plain_text.exit_code == 0 and "read as plain text, one prompt per line" in plain_text.stderr
    assert "4 rows" in plain_text.stderr
    # and a plain text file is said to be one
    other = tmp_path / "plain.txt"
    other.write_text("a cat\na dog\n", encoding="utf-8")
    assert "read as plain text" in genbatch("validate", other).stderr


def test_a1111_prompt_file_problems_are_located_at_their_column(tmp_path):
    manifest = tmp_path / "bad.prompts"
    manifest.write_text(
        '--prompt "ok" --steps 20\n'
        '--prompt "x" --steps abc\n'
        '--prompt "y" --bogus 3\n'
        '--prompt "z" --sampler_name "Euler b"\n'
        '--prompt "unclosed\n'
        "--steps 4\n",
        encoding="utf-8",
    )
    result = genbatch("validate", manifest, "--format", "a1111")
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0] == f"{manifest}:2:22: --steps: 'abc' is not a valid steps; expected a whole number from 1 to 1000"
    assert lines[1].startswith(
        f"{manifest}:3:14: unknown option '--bogus'; expected A1111 prompt-file options: --prompt, --negative_prompt"
    )
    assert lines[2].startswith(
        f"{manifest}:4:29: --sampler_name: scheduler 'Euler b' is not a known sampler; "
        "expected an A1111 sampler name (DPM++ 2M,"
    )
    assert lines[3].startswith(f"{manifest}:5:") and "No closing quotation" in lines[3]
    assert lines[4] == f"{manifest}:6:1: no --prompt on this line"
    assert "5 problems, 1 valid rows" in result.stderr


def test_a1111_image_counts_over_the_limit_are_located_at_their_options_in_line_order(tmp_path):
    manifest = tmp_path / "many.txt"
    manifest.write_text(
        '--prompt "a" --n_iter 10000 --batch_size 10000\n'
        '--prompt "b" --steps x\n'
        '--prompt "c" --batch_size 8 --n_iter 2000\n'
        '--prompt "d" --n_iter 2000000000\n'
        '--prompt "e" --n_iter 100 --batch_size 100\n',
        encoding="utf-8",
    )
    result = genbatch("validate", manifest)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stdout.splitlines() == [
        f"{manifest}:1:14: --n_iter 10000 x --batch_size 10000: num_images 100000000 is over the limit of 10000 "
        "images per row; pass --max-images-per-row N to allow more",
        f"{manifest}:2:22: --steps: 'x' is not a valid steps; expected a whole number from 1 to 1000",
        f"{manifest}:3:14: --batch_size 8 x --n_iter 2000: num_images 16000 is over the limit of 10000 images per row; "
        "pass --max-images-per-row N to allow more",
        f"{manifest}:4:23: --n_iter: num_images 2000000000 is out of range; "
        "expected a whole number from 1 to 1000000000",
    ]
    assert "4 problems, 1 valid rows" in result.stderr


# --- A1111 sampler names -----------------------------------------------------------------------


def test_a1111_sampler_names_map_to_schedulers_and_their_options(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,seed\na red circle,1\n", encoding="utf-8")

    def key(*options: str) -> tuple[str, str, str | None]:
        (job,) = dry_run(manifest, tmp_path / "out", *options)["jobs"]
        return job["key"], job["scheduler"], job.get("scheduler_options")

    class_name = key("--scheduler", "DPMSolverMultistepScheduler")
    assert key("--scheduler", "DPM++ 2M") == class_name  # the same scheduler: the same job
    assert key("--scheduler", "dpm++ 2m") == class_name  # names are read as A1111 users type them
    karras = key("--scheduler", "DPM++ 2M Karras")
    sde_karras = key("--scheduler", "DPM++ 2M SDE Karras")
    assert karras[1] == sde_karras[1] == "DPMSolverMultistepScheduler"
    assert len({class_name[0], karras[0], sde_karras[0]}) == 3  # the options are part of the key
    assert json.loads(sde_karras[2]) == {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}
    assert key("--scheduler", "Euler a")[1:] == ("EulerAncestralDiscreteScheduler", None)

    unknown = genbatch("run", manifest, "--out", tmp_path / "o", "--scheduler", "Euler b", *FAST)
    assert unknown.exit_code == 2
    assert "--scheduler 'Euler b' is not a known sampler; expected an A1111 sampler name (DPM++ 2M, " in unknown.stderr


def _model_named(tiny_model: Path, folder: Path) -> Path:
    shutil.copytree(tiny_model, folder, ignore=shutil.ignore_patterns("genbatch.json", "*.lock"))
    (folder / "genbatch.json").write_text(json.dumps({"steps": 2, "width": 64, "height": 64}), encoding="utf-8")
    return folder


# --- Metadata other tools read ----------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["png", "jpg", "webp"])
def test_metadata_reads_back_with_sd_parsers_and_a1111_rules(tmp_path, tiny_model, image_format):
    from sd_parsers import ParserManager

    model = _model_named(tiny_model, tmp_path / "lcm, v2")  # a comma in a value: quoted
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        'prompt,negative_prompt,seed,sampler\n"café ☕, 東京","ugly, 見にくい",7,DPM++ 2M Karras\n'
        "a plain one,,8,Euler a\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, "--model", model, "--format", image_format, "--quiet")
    assert result.exit_code == 0, result.output
    records = {r["seed"]: r for r in ledger(out)}
    for seed, sampler, prompt, negative in (
        (7, "DPM++ 2M Karras", "café ☕, 東京", "ugly, 見にくい"),
        (8, "Euler a", "a plain one", ""),
    ):
        path = out / records[seed]["file"]
        info = ParserManager().parse(path)
        assert info is not None, path
        assert info.prompts[0].value == prompt
        assert [p.value for p in info.negative_prompts] == ([negative] if negative else [])
        (used,) = info.samplers
        assert used.name == sampler
        assert used.parameters["seed"] == str(seed) and used.parameters["steps"] == "2"
        with Image.open(path) as image:
            if image_format == "png":
                text, record = image.text["parameters"], json.loads(image.text["genbatch"])
            else:
                exif = image.getexif()
                comment = exif.get_ifd(0x8769)[0x9286]
                assert comment.startswith(b"UNICODE\0")  # as A1111 writes it
                text, record = comment[8:].decode("utf-16-be"), json.loads(exif[0x010E])
        # A1111's own reading: quoted values come back whole
        settings = parse_parameters(text)
        assert settings["Prompt"] == prompt and settings["Negative prompt"] == negative
        assert settings["Model"] == "lcm, v2" and settings["Sampler"] == sampler
        assert settings["Model hash"] == records[seed]["model_fingerprint"][:10]
        assert '"lcm, v2"' in text
        assert record["prompt"] == prompt and record["key"] == records[seed]["key"]  # the JSON record, non-ASCII intact


# --- Single-file checkpoints, --vae, clip skip --------------------------------------------------

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_to_ldm(state: dict, config: dict) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    per_block = config["layers_per_block"]
    attention_up = {b for b, kind in enumerate(config["up_block_types"]) if "CrossAttn" in kind}
    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    out = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if key in top:
            new = top[key]
        elif parts[0] in ("down_blocks", "up_blocks"):
            block, kind = int(parts[1]), parts[2]
            down = parts[0] == "down_blocks"
            base = 1 + block * (per_block + 1) if down else block * (per_block + 1)
            blocks = "input_blocks" if down else "output_blocks"
            if kind == "resnets":
                new = f"{blocks}.{base + int(parts[3])}.0.{_RESNET.get(parts[4], parts[4])}.{'.'.join(parts[5:])}"
            elif kind == "attentions":
                new = f"{blocks}.{base + int(parts[3])}.1.{'.'.join(parts[4:])}"
            elif kind == "downsamplers":
                new = f"input_blocks.{base + per_block}.0.op.{parts[-1]}"
            else:
                new = f"output_blocks.{base + per_block}.{2 if block in attention_up else 1}.conv.{parts[-1]}"
        elif parts[1] == "resnets":  # mid_block
            new = f"middle_block.{2 * int(parts[2])}.{_RESNET.get(parts[3], parts[3])}.{'.'.join(parts[4:])}"
        else:
            new = f"middle_block.1.{'.'.join(parts[3:])}"
        out["model.diffusion_model." + new] = tensor
    return out


def _vae_to_ldm(state: dict, config: dict) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    count = len(config["up_block_types"])
    top = DIFFUSERS_TO_LDM_MAPPING["vae"]
    out = {}
    for key, tensor in state.items():
        new = top.get(key, key)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(
            r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{count - 1 - int(m[1])}.block.", new
        )
        new = re.sub(
            r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
            lambda m: f"decoder.up.{count - 1 - int(m[1])}.upsample.",
            new,
        )
        new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for ours, theirs in _VAE_ATTENTION.items():
                new = new.replace(f".{ours}.", f".{theirs}.")
            tensor = tensor[:, :, None, None] if tensor.ndim == 2 else tensor  # 1x1 convolutions in LDM
        out["first_stage_model." + new.replace("conv_shortcut", "nin_shortcut")] = tensor
    return out


def write_single_file(folder: Path, target: Path) -> Path:
    """The tiny model as one checkpoint in the original (A1111/LDM) key layout, made offline
    by inverting diffusers' own conversion tables."""
    read = lambda part, name: load_file(folder / part / name)  # noqa: E731
    config = lambda part: json.loads((folder / part / "config.json").read_text())  # noqa: E731
    state = {
        **_unet_to_ldm(read("unet", "diffusion_pytorch_model.safetensors"), config("unet")),
        **_vae_to_ldm(read("vae", "diffusion_pytorch_model.safetensors"), config("vae")),
    }
    for key, tensor in read("text_encoder", "model.safetensors").items():
        name = key if key.startswith("text_model.") else "text_model." + key  # transformers 5 drops the prefix
        state["cond_stage_model.transformer." + name] = tensor
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    return target


def test_single_file_checkpoint_loads_with_its_config_and_says_what_to_download(tmp_path, tiny_model):
    checkpoint = write_single_file(tiny_model, tmp_path / "tiny-sd.safetensors")
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,seed\na red circle,3\n", encoding="utf-8")

    no_config = genbatch("run", manifest, "--out", tmp_path / "none", "--model", checkpoint, *FAST[2:])
    assert no_config.exit_code == 2
    assert f"{checkpoint} is a single-file checkpoint" in no_config.stderr
    assert (
        "hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --include '*.json' '*.txt'\n"
        "then add --config stable-diffusion-v1-5/stable-diffusion-v1-5"
    ) in no_config.stderr
    assert not (tmp_path / "none").exists()

    single, folder = tmp_path / "single", tmp_path / "folder"
    result = genbatch("run", manifest, "--out", single, "--model", checkpoint, "--config", tiny_model, *FAST[2:])
    assert result.exit_code == 0, result.output
    assert genbatch("run", manifest, "--out", folder, *FAST).exit_code == 0
    (one,), (other,) = ledger(single), ledger(folder)
    assert (pixels(single / one["file"]) == pixels(folder / other["file"])).all()  # the same weights
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert one["model_hash"] == sha[:10] and one["model"] == "tiny-sd.safetensors"
    assert one["key"] != other["key"]
    with Image.open(single / one["file"]) as image:
        assert f"Model hash: {sha[:10]}, Model: tiny-sd.safetensors" in image.text["parameters"]


def test_vae_swap_and_clip_skip_change_pixels_and_keys(tmp_path, tiny_model):
    other_vae = tmp_path / "other-vae"
    shutil.copytree(tiny_model / "vae", other_vae)
    weights = other_vae / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"] + torch.tensor([0.5, -0.5, 0.25])
    save_file(state, str(weights))
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "prompt,seed,clip_skip,Category\na red circle,3,,Colors\na red circle,3,2,Colors\ntwo squares,4,,Counting\n",
        encoding="utf-8",
    )
    plain, swapped = tmp_path / "plain", tmp_path / "vae"
    assert genbatch("run", manifest, "--out", plain, *FAST).exit_code == 0
    result = genbatch("run", manifest, "--out", swapped, "--vae", other_vae, *FAST)
    assert result.exit_code == 0, result.output
    base, skipped, _ = sorted(ledger(plain), key=lambda r: r["index"])
    with_vae = sorted(ledger(swapped), key=lambda r: r["index"])[0]
    assert with_vae["vae"] == "other-vae" and with_vae["key"] != base["key"]
    assert not (pixels(plain / base["file"]) == pixels(swapped / with_vae["file"])).all()
    # clip skip 2 (A1111's count): the layer before the last; another key, other pixels
    assert skipped["clip_skip"] == 2 and "clip_skip" not in base and skipped["key"] != base["key"]
    assert not (pixels(plain / base["file"]) == pixels(plain / skipped["file"])).all()
    with Image.open(plain / skipped["file"]) as image:
        assert "Model: tiny-random, Clip skip: 2, Backend: torch" in image.text["parameters"]

    # the manifest's own columns: real report columns, and on the cards
    table = pd.read_parquet(plain / "report.parquet")
    assert list(table.sort_values("index")["field.Category"]) == ["Colors", "Colors", "Counting"]
    assert "field.Category" in pd.read_csv(plain / "report.csv").columns
    assert "field.clip_skip" not in table.columns  # a generation field is not an extra column
    report = (plain / "report.html").read_text(encoding="utf-8")
    assert '["Category","Counting"]' in report


def test_report_cards_show_and_filter_extra_columns_with_crisp_small_images(tmp_path, browser):  # noqa: F811
    browser, expect = browser
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "prompt,seed,Category\na red circle,1,Colors\ntwo squares,2,Counting\nthree,3,Counting\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    page, problems = _open(browser, out / "report.html")
    cards = page.locator("#images .card")
    expect(cards).to_have_count(3)
    expect(cards.first.locator(".extra")).to_have_text("Category: Colors")
    assert cards.first.locator("img").evaluate("e => getComputedStyle(e).imageRendering") == "pixelated"
    page.select_option("select[data-column='Category']", "Counting")
    expect(cards).to_have_count(2)
    page.fill("#filter", "category:colors")
    expect(cards).to_have_count(0)
    page.select_option("select[data-column='Category']", "")
    expect(cards).to_have_count(1)
    assert not problems
    page.close()


# --- Messages and logs --------------------------------------------------------------------------


def test_model_messages_name_the_path_and_the_download_command(tmp_path, monkeypatch):
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt\na\n", encoding="utf-8")
    (tmp_path / "models" / "my-sdxl-base").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    typo = genbatch("run", manifest, "--out", tmp_path / "o", "--model", "models/my-sdxl")
    assert typo.exit_code == 2
    assert "error: models/my-sdxl: no such folder; did you mean models/my-sdxl-base?" in typo.stderr
    hub = genbatch("run", manifest, "--out", tmp_path / "o", "--model", "someorg/not-cached")
    assert hub.exit_code == 2 and "    hf download someorg/not-cached\n" in hub.stderr


def _hub_cache(tiny_model: Path, cache: Path, repo: str) -> None:
    """``repo`` in a Hugging Face cache folder, as ``hf download`` leaves it."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(tiny_model, root / "snapshots" / ("0" * 40), ignore=shutil.ignore_patterns("*.lock"))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0" * 40)


def test_plain_log_lines_have_timestamps_and_no_library_progress_bars(tmp_path, tiny_model):
    cache = tmp_path / "hub"
    _hub_cache(tiny_model, cache, "someorg/tiny")
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,model\na,someorg/tiny\nb,tiny-random\n", encoding="utf-8")
    quieting = ("HF_HUB_DISABLE", "TRANSFORMERS_VERB", "DIFFUSERS_VERB")
    env = {k: v for k, v in os.environ.items() if not k.startswith(quieting)}
    # a fresh home builds (saves) the tiny model; the hub id loads from the cache
    env.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", GENBATCH_HOME=str(tmp_path / "home"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "genbatch.cli.app",
            "run",
            str(manifest),
            "--out",
            str(tmp_path / "out"),
            "--steps",
            "2",
            "--batch-size",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    for bar in ("Loading weights", "Writing model shards", "Loading pipeline components", "it/s]", "%|"):
        assert bar not in done.stderr
    progress = [line for line in done.stderr.splitlines() if " genbatch: " in line]
    assert progress and all(
        re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ genbatch: \d+/2 images", line) for line in progress
    )
    assert progress[-1].startswith(progress[-1][:21] + "genbatch: 2/2 images (0 failed)")
    assert "ETA" not in progress[-1]


def test_eta_only_once_there_is_a_rate(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("genbatch.progress.time.monotonic", lambda: clock[0])
    stream = io.StringIO()
    progress = Progress(10, stream=stream, interval=0)
    clock[0] = 160.0  # the first image took a minute: loading and warm-up
    progress.advance(True)
    clock[0] = 161.0
    progress.advance(True)
    clock[0] = 166.0
    progress.advance(True)
    lines = stream.getvalue().splitlines()
    assert "ETA" not in lines[0] and "ETA" not in lines[1]  # one image after the first: no rate yet
    assert lines[2].endswith("ETA 21s")  # 2 images in 6 s after the first: 7 left at 3 s each
