"""The family contract, for every first-class diffusers family on the torch backend, with a
tiny random pipeline of each (genbatch.pipelines.tiny_models): a CLI run makes the images; an image is
the same alone or in a batch; it equals what plain diffusers returns for the same prompt,
parameters and ``generator=torch.Generator("cpu").manual_seed(seed)``; a rerun generates
nothing; the ledger says the family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from family_contract import PROMPTS, by_seed, check_family_contract
from helpers import genbatch, ledger, pixels

from genbatch.pipelines.families import detect, family_defaults, family_of, folder_family, read_defaults

# tiny pipeline -> (family, what plain diffusers needs besides prompt, size, steps, guidance)
FAMILIES = {
    "sd": ("sd", {}),
    "sdxl": ("sdxl", {}),
    "sd3": ("sd3", {"max_sequence_length": 32}),
    "flux": ("flux", {"max_sequence_length": 32}),
    "pixart-sigma": ("pixart", {"max_sequence_length": 32, "use_resolution_binning": False, "clean_caption": False}),
    "sana": ("sana", {"max_sequence_length": 32, "use_resolution_binning": False}),
    "lcm": ("generic", {}),  # LatentConsistencyModelPipeline: the generic path
}


@pytest.mark.parametrize("tiny", list(FAMILIES))
def test_family_contract(tiny, tiny_family, tmp_path):
    family, extra = FAMILIES[tiny]
    check_family_contract(tiny_family(tiny), family, extra, tmp_path)


@pytest.mark.parametrize("tiny", list(FAMILIES))
def test_family_detected_from_model_index_before_loading(tiny, tiny_family):
    folder = tiny_family(tiny)
    assert detect(folder).name == folder_family(folder).name == FAMILIES[tiny][0]


def test_family_defaults_when_the_model_folder_says_nothing(tiny_family, tmp_path):
    # a genbatch.json wins; without one, the family's own steps and guidance, and the size
    # its configs give (sample size x VAE downsampling)
    flux = tiny_family("flux")
    assert read_defaults(flux)["steps"] == 4 and read_defaults(flux)["max_sequence_length"] == 32
    assert family_defaults(flux, detect(flux)) == {"steps": 28, "guidance_scale": 3.5, "width": 256, "height": 256}
    schnell = tiny_family("flux-schnell")
    assert family_defaults(schnell, detect(schnell))["steps"] == 4
    assert family_defaults(schnell, detect(schnell))["guidance_scale"] == 0.0
    for tiny, steps, guidance, size in [
        ("sdxl", 30, 5.0, 64),
        ("sd3", 28, 7.0, 32),
        ("pixart-sigma", 20, 4.5, 32),
        ("sana", 20, 4.5, 32),
        ("sd", 30, 7.5, 64),
    ]:
        folder = tiny_family(tiny)
        assert family_defaults(folder, detect(folder)) == {
            "steps": steps,
            "guidance_scale": guidance,
            "width": size,
            "height": size,
        }, tiny


@pytest.mark.parametrize(
    "cls, words",
    [
        ("StableDiffusionXLControlNetPipeline", "input image"),
        ("FluxKontextInpaintPipeline", "input image"),
        ("IFPipeline", "super-resolution"),
        ("KandinskyV22CombinedPipeline", "prior"),
        ("StableCascadeCombinedPipeline", "prior"),
        ("StableVideoDiffusionPipeline", "input image"),
        ("QwenImageEditPlusPipeline", "input image"),  # an instruction edit of several images per prompt
        ("FluxFillPipeline", "input image"),
        ("HunyuanVideoPipeline", "not a text-to-image pipeline"),
        ("NoSuchPipeline", "not a pipeline class of the installed diffusers"),
    ],
)
def test_pipelines_that_need_more_than_a_prompt_are_refused_by_name(cls, words):
    from genbatch.errors import ModelError

    with pytest.raises(ModelError) as caught:
        family_of(cls)
    assert cls in str(caught.value) and words in str(caught.value)


def test_instruction_edit_pipelines_have_families_of_their_own():
    # the edit models genbatch runs (tests/test_image_rows_families.py): the row's image is theirs
    assert family_of("FluxKontextPipeline").name == "flux-kontext"
    assert family_of("QwenImageEditPipeline").name == "qwen-image-edit"


def test_other_text_only_pipelines_take_the_generic_path():
    assert family_of("AuraFlowPipeline").name == "generic"
    assert family_of("LatentConsistencyModelPipeline").name == "generic"
    assert family_of("PixArtAlphaPipeline").name == "pixart"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(_has("torchsde"), reason="torchsde is installed here")
def test_a_scheduler_whose_package_is_missing_is_one_line_naming_it(tiny_family, tmp_path):
    manifest = tmp_path / "p.txt"
    manifest.write_text("a red circle\n")
    result = genbatch(
        "run",
        manifest,
        "--model",
        tiny_family("sd"),
        "--steps",
        "2",
        "--out",
        tmp_path / "out",
        "--scheduler",
        "DPMSolverSDEScheduler",
        "--quiet",
    )
    assert result.exit_code == 2
    assert "error: --scheduler DPMSolverSDEScheduler needs the Python package torchsde" in result.output
    assert "pip install torchsde" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not _has("torchsde"), reason="DPMSolverSDEScheduler needs torchsde (pip install torchsde)")
def test_a_scheduler_with_its_own_noise_seed_gets_each_images_seed(tiny_family, tmp_path):
    # DPMSolverSDEScheduler draws its noise from a Brownian tree seeded by noise_sampler_seed,
    # not from the generator: genbatch gives it the images' seeds, one per image.
    from diffusers import DiffusionPipeline, DPMSolverSDEScheduler

    folder = tiny_family("sd")
    manifest = tmp_path / "prompts.csv"
    manifest.write_text("prompt,seed\n" + "".join(f"{p},{s}\n" for p, s in PROMPTS), encoding="utf-8")
    common = ["--model", folder, "--steps", "3", "--scheduler", "DPMSolverSDEScheduler", "--quiet"]
    assert genbatch("run", manifest, "--out", tmp_path / "b3", "--batch-size", "3", *common).exit_code == 0
    assert genbatch("run", manifest, "--out", tmp_path / "b1", "--batch-size", "1", *common).exit_code == 0
    in_batch, alone = by_seed(tmp_path / "b3"), by_seed(tmp_path / "b1")
    assert max(int(np.abs(in_batch[s] - alone[s]).max()) for s in in_batch) <= 1

    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DPMSolverSDEScheduler.from_config(pipe.scheduler.config)
    record = ledger(tmp_path / "b3")[0]
    pipe.scheduler.noise_sampler_seed = [record["seed"]]
    out = pipe(
        prompt=record["prompt"],
        num_inference_steps=3,
        guidance_scale=record["guidance_scale"],
        negative_prompt="",
        generator=torch.Generator("cpu").manual_seed(record["seed"]),
        output_type="np",
    )
    plain = (out.images[0] * 255).round().astype(np.int16)
    assert np.abs(plain - in_batch[record["seed"]]).max() <= 2


@pytest.mark.parametrize(
    "tiny, title", [("sd3", "SD3/3.5"), ("flux", "Flux.1"), ("pixart-sigma", "PixArt-α/Σ"), ("sana", "Sana")]
)
def test_export_refuses_other_families_by_name(tiny, title, tiny_family, tmp_path):
    result = genbatch("export", "--to", "onnx", "--model", tiny_family(tiny), "--out", tmp_path / "o")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"is a {title} pipeline, which genbatch cannot export to ONNX" in result.output
    assert not (tmp_path / "o").exists()


def test_models_command_says_family_and_backends(tiny_family):
    folders = [tiny_family(t) for t in FAMILIES]
    found = {Path(m["path"]).name: m for m in json.loads(genbatch("models", *folders, "--json").stdout)}
    for tiny, (family, _) in FAMILIES.items():
        assert found[tiny]["family"] == family and found[tiny]["torch"] is True
        assert (found[tiny]["onnx"] == "after genbatch export --to onnx") == (family in ("sd", "sdxl"))
    shown = genbatch("models", tiny_family("flux")).stdout
    assert "family flux (FluxPipeline); torch: yes, onnx: no: genbatch export does not export Flux.1" in shown


def test_settings_a_family_does_not_take_are_named(tiny_family):
    from genbatch.errors import ModelError
    from genbatch.pipelines.families import FLUX, SDXL
    from genbatch.plan.family_checks import check_model, check_negative_prompt

    assert "Flux.1 takes no negative prompt" in check_negative_prompt(FLUX, "blurry")
    assert check_negative_prompt(FLUX, None) is None and check_negative_prompt(SDXL, "blurry") is None
    with pytest.raises(ModelError, match="SD3/3.5 pipelines take no list of timesteps"):
        check_model(tiny_family("sd3"), {"timesteps": {2: (999, 500)}})
    assert check_model(tiny_family("sdxl"), {"timesteps": {2: (999, 500)}}).name == "sdxl"


def test_a_folder_missing_a_component_is_named(tiny_family, tmp_path):
    import shutil

    from genbatch.errors import ModelError

    folder = tmp_path / "flux"
    shutil.copytree(tiny_family("flux"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder_2"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="FluxPipeline has no text_encoder_2"):
        detect(folder)


def test_models_that_cannot_run_are_named_with_file_and_line_before_any_model_loads(tiny_family, tmp_path):
    import shutil

    broken = tmp_path / "broken-sd3"
    shutil.copytree(tiny_family("sd3"), broken)
    index = json.loads((broken / "model_index.json").read_text())
    index["transformer"] = [None, None]
    (broken / "model_index.json").write_text(json.dumps(index))
    flux, sdxl = tiny_family("flux"), tiny_family("sdxl")
    manifest = tmp_path / "p.csv"
    manifest.write_text(
        f"prompt,negative,model\na,blurry,{flux}\nb,,{flux}\nc,blurry,{sdxl}\nd,,{broken}\n"
        f"e,,{broken}\nf,,{tmp_path / 'nowhere'}\n",
        encoding="utf-8",
    )
    expected = [
        f"{manifest}:2:negative: Flux.1 takes no negative prompt (it is guidance-distilled); remove it for this model",
        f"{manifest}:5:model: broken-sd3: {broken.resolve()}: StableDiffusion3Pipeline has no transformer "
        "(model_index.json names none), which it needs to make an image",
    ]
    checked = genbatch("validate", manifest)
    assert checked.exit_code == 2
    assert checked.stdout.splitlines() == [*expected, f"{manifest}:7:model: {tmp_path / 'nowhere'}: no such folder"]
    manifest.write_text("\n".join(manifest.read_text().splitlines()[:-1]) + "\n", encoding="utf-8")
    for dry_run in ([], ["--dry-run"]):
        ran = genbatch("run", manifest, "--out", tmp_path / "out", *dry_run)
        assert ran.exit_code == 2 and ran.stderr.splitlines()[1:] == expected, ran.output
        assert not (tmp_path / "out").exists()
    # --negative for a model that takes none: said once per model, at its first row
    plain = tmp_path / "plain.csv"
    plain.write_text(f"prompt,model\na,{flux}\nb,{flux}\n", encoding="utf-8")
    ran = genbatch("run", plain, "--negative", "blurry", "--out", tmp_path / "out", "--dry-run")
    assert ran.exit_code == 2
    assert ran.stderr.splitlines()[1:] == [
        f"{plain}:2:--negative: Flux.1 takes no negative prompt (it is guidance-distilled); remove it for this model"
    ]


def test_no_negative_prompt_changes_keys_only_where_it_changes_pixels(tiny_family, tmp_path):
    from diffusers import DiffusionPipeline

    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,negative_prompt,seed\na red circle,,11\na red circle,blurry,12\n", encoding="utf-8")
    for tiny, differs in (("sd", False), ("sdxl", True)):
        folder = tiny_family(tiny)
        none, empty = tmp_path / f"{tiny}-none", tmp_path / f"{tiny}-empty"
        # rows with and without a negative prompt in one run: two pipeline calls, each image as asked
        assert genbatch("run", manifest, "--model", folder, "--steps", "2", "--out", none, "--quiet").exit_code == 0
        assert (
            genbatch(
                "run", manifest, "--model", folder, "--steps", "2", "--negative", "", "--out", empty, "--quiet"
            ).exit_code
            == 0
        )
        by_seed_order = (sorted(ledger(out), key=lambda r: r["seed"]) for out in (none, empty))
        (no_negative, blurry), (empty_negative, _) = by_seed_order
        # SD: no negative prompt is "" (the same pixels, the keys genbatch always gave); SDXL: none
        assert ("negative_prompt" in no_negative["call"]) != differs and blurry["call"]["negative_prompt"] == "blurry"
        assert (no_negative["key"] != empty_negative["key"]) == differs, tiny
        a, b = pixels(none / no_negative["file"]), pixels(empty / empty_negative["file"])
        assert (np.abs(a - b).max() > 2) == differs, tiny
        pipe = DiffusionPipeline.from_pretrained(folder)
        for record, out in ((no_negative, none), (blurry, none), (empty_negative, empty)):
            image = pipe(**record["call"], generator=torch.Generator("cpu").manual_seed(record["seed"])).images[0]
            assert np.abs(np.asarray(image, dtype=np.int16) - pixels(out / record["file"])).max() <= 2


def test_memory_options_are_recorded_and_leave_pixels_alone(tiny_family, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,seed\na red circle,11\ntwo squares,12\n", encoding="utf-8")
    common = [manifest, "--model", tiny_family("sdxl"), "--steps", "2", "--quiet"]
    assert genbatch("run", *common, "--out", tmp_path / "plain").exit_code == 0
    assert genbatch("run", *common, "--out", tmp_path / "low", "--offload", "model", "--vae-slicing").exit_code == 0
    run = json.loads((tmp_path / "low" / "run.json").read_text())
    assert run["settings"]["backend_options"]["offload"] == run["backend_facts"]["offload"] == "model"
    assert run["backend_facts"]["vae_slicing"] is True and run["backend_facts"]["vae_tiling"] is False
    assert by_seed(tmp_path / "plain").keys() == by_seed(tmp_path / "low").keys()
    for seed, image in by_seed(tmp_path / "plain").items():
        assert np.abs(image - by_seed(tmp_path / "low")[seed]).max() <= 1
    bad = genbatch("run", *common, "--out", tmp_path / "bad", "--offload", "gpu")
    assert bad.exit_code == 2 and "--offload 'gpu': expected none, model or sequential" in bad.stderr


def test_sdxl_exports_to_onnx_and_keeps_the_seed_contract(tiny_family, tmp_path):
    # two text encoders, pooled embeddings, time ids; no negative prompt: zeroed embeddings
    export = tmp_path / "sdxl-onnx"
    exported = genbatch("export", "--to", "onnx", "--model", tiny_family("sdxl"), "--out", export, "--json")
    assert exported.exit_code == 0, exported.output
    parity = json.loads(exported.stdout)["parity"]
    assert parity["passed"] and set(parity["components"]) == {
        "text_encoder",
        "text_encoder_2",
        "unet",
        "vae_decoder",
        "vae_encoder",
    }
    assert json.loads(genbatch("models", export, "--json").stdout)[0]["family"] == "sdxl"
    manifest = tmp_path / "p.csv"
    manifest.write_text(
        "prompt,negative_prompt,seed\na red circle,,11\ntwo squares,blurry,12\nthird,,13\n", encoding="utf-8"
    )
    runs = {}
    for name, args in (
        ("onnx", ["--backend", "onnx", "--model", export]),
        ("onnx-alone", ["--backend", "onnx", "--model", export, "--batch-size", "1"]),
        ("torch", ["--model", tiny_family("sdxl")]),
    ):
        assert genbatch("run", manifest, "--steps", "3", "--out", tmp_path / name, "--quiet", *args).exit_code == 0
        runs[name] = by_seed(tmp_path / name)
    for seed in (11, 12, 13):
        assert np.abs(runs["onnx"][seed] - runs["onnx-alone"][seed]).max() <= 1
        assert np.abs(runs["onnx"][seed] - runs["torch"][seed]).max() <= 2
    assert {r["family"] for r in ledger(tmp_path / "onnx")} == {"sdxl"}


def test_max_sequence_length_is_taken_by_the_families_that_have_one(tiny_family, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,max_sequence_length\na red circle,16\n", encoding="utf-8")
    refused = genbatch("run", manifest, "--model", tiny_family("sd"), "--out", tmp_path / "o", "--dry-run")
    assert refused.exit_code == 2
    assert (
        f"{manifest}:2:max_sequence_length: SD 1.x/2.x takes no max_sequence_length (its text encoders' lengths "
        "are fixed); remove it here"
    ) in refused.stderr
    planned = genbatch("run", manifest, "--model", tiny_family("flux"), "--out", tmp_path / "o", "--dry-run", "--json")
    (job,) = json.loads(planned.stdout)["jobs"]
    assert job["max_sequence_length"] == 16 and job["family"] == "flux"
