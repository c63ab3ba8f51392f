"""Rows with images on every pipeline kind genbatch claims, on the tiny builds of each family
(genbatch.pipelines.tiny_builds): img2img and inpainting on SDXL, SD3 and Flux.1, ControlNet on
SD, SDXL and Flux.1 (with img2img and inpainting on SD), a manifest of inputs of two sizes, and
instruction edits on Flux.1 Kontext and Qwen-Image-Edit. Each holds the contract of rows with
images (image_rows_contract.check_image_rows): the same image alone or in a batch of 3, plain
diffusers' image for the ledger line's call, and a build that moves by each input swapped.
With ``-s``, the figures are printed as a table at the end."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from helpers import genbatch, ledger
from image_inputs import edge_image, mask_image, shapes_image
from image_rows_contract import check_image_rows
from PIL import Image

FIGURES: dict[str, dict[str, int]] = {}
STEPS = ("--steps", "3")
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Input files for the rows, by size: image-64-0.png, mask-32-1.png, edges-64-2.png..."""
    folder = tmp_path_factory.mktemp("inputs")
    for size in (32, 64):
        for n in range(3):
            shapes_image(size, n).save(folder / f"image-{size}-{n}.png")
            mask_image(size, n).save(folder / f"mask-{size}-{n}.png")
            edge_image(size, n).save(folder / f"edges-{size}-{n}.png")
    for width, height in ((48, 32), (48, 64)):
        for n in range(3):
            shapes_image((width, height), n).save(folder / f"image-{width}x{height}-{n}.png")
    return folder


def auto(kind: str, folder: Path, controlnet: Any = None) -> Any:
    """Plain diffusers' pipeline of ``kind`` for a model folder, as the auto pipelines make it."""
    import diffusers

    extra = {"controlnet": controlnet} if controlnet is not None else {}
    return getattr(diffusers, f"AutoPipelineFor{kind}").from_pretrained(folder, **extra)


def controlnet_model(folder: Path) -> Any:
    import diffusers

    from genbatch.pipelines.model_files import read_json

    return getattr(diffusers, read_json(folder / "config.json")["_class_name"]).from_pretrained(folder)


def made_in_batches_of(inputs: Path, name: str) -> list[int]:
    """The batch size each image of a check's batch-3 run was made in, in row order."""
    return [r["batch_size"] for r in sorted(ledger(inputs / f"{name}-b3"), key=lambda r: r["index"])]


@pytest.fixture(scope="module", autouse=True)
def figures_table():
    """After the module's tests: each pipeline kind's figures (max |d|, 0-255 levels), a table."""
    yield
    inputs = sorted({name for figures in FIGURES.values() for name in figures if name.endswith(" moves it")})
    lines = ["| pipeline kind | batch 3 vs 1 | vs plain diffusers | " + " | ".join(inputs) + " |"]
    lines.append("|---" * (3 + len(inputs)) + "|")
    for kind, figures in FIGURES.items():
        cells = [str(figures.get(name, "")) for name in ("batch 3 vs 1", "vs plain diffusers", *inputs)]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(lines))


SIZES = {"sdxl": 64, "sd3": 32, "flux": 32}


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_img2img_rows(inputs, tiny_family, family):
    folder, size = tiny_family(family), SIZES[family]
    FIGURES[f"img2img ({family})"] = check_image_rows(
        lambda: auto("Image2Image", folder),
        folder,
        inputs,
        "prompt,image,strength,seed",
        [f"a red circle,image-{size}-{n}.png,0.5,{n + 1}" for n in range(3)],
        run_args=STEPS,  # strength 0.5 of 3 steps runs 1 (0.7 runs 2, from a noise that drowns the image); 1.0 runs 3
        swaps={"image": f"image-{size}-1.png", "strength": 1.0},
        name=f"i2i-{family}",
    )
    assert made_in_batches_of(inputs, f"i2i-{family}") == [3, 3, 3]


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_inpainting_rows(inputs, tiny_family, family):
    folder, size = tiny_family(family), SIZES[family]
    FIGURES[f"inpainting ({family})"] = check_image_rows(
        lambda: auto("Inpainting", folder),
        folder,
        inputs,
        "prompt,image,mask,seed",
        [f"a red circle,image-{size}-{n}.png,mask-{size}-{n}.png,{n + 1}" for n in range(3)],
        run_args=STEPS,  # each pipeline's default strength (SD3's and Flux's 0.6: 1 step of 3)
        swaps={"image": f"image-{size}-1.png", "mask_image": f"mask-{size}-1.png"},
        name=f"inpaint-{family}",
    )
    assert made_in_batches_of(inputs, f"inpaint-{family}") == [3, 3, 3]


CONTROLNETS = {"sd": 64, "sdxl": 64, "flux": 32}


@pytest.mark.parametrize("family", ["sd", "sdxl", "flux"])
def test_controlnet_rows(inputs, tiny_family, family):
    """A control image per row, the ControlNet a column (SD, Flux) or --controlnet (SDXL)."""
    folder, controlnet, size = tiny_family(family), tiny_family(f"{family}-controlnet"), CONTROLNETS[family]
    if family == "sdxl":  # the ControlNet and its scale from the run's options
        header = "prompt,control_image,seed"
        rows = [f"a red circle,edges-{size}-{n}.png,{n + 1}" for n in range(3)]
        run_args = (*STEPS, "--controlnet", str(controlnet), "--control-scale", "1.0")
    else:  # from the rows' columns
        header = "prompt,control_image,controlnet,controlnet_conditioning_scale,seed"
        rows = [f"a red circle,edges-{size}-{n}.png,{controlnet},1.0,{n + 1}" for n in range(3)]
        run_args = STEPS
    FIGURES[f"ControlNet ({family})"] = check_image_rows(
        lambda: auto("Text2Image", folder, controlnet_model(controlnet)),
        folder,
        inputs,
        header,
        rows,
        run_args=run_args,
        swaps={"control_image": f"edges-{size}-1.png", "controlnet_conditioning_scale": 0.0},
        name=f"controlnet-{family}",
    )
    assert made_in_batches_of(inputs, f"controlnet-{family}") == [3, 3, 3]


@pytest.mark.parametrize("family", ["sd", "flux"])
def test_controlnet_with_img2img_and_inpainting_rows(inputs, tiny_family, family):
    folder, controlnet, size = tiny_family(family), tiny_family(f"{family}-controlnet"), CONTROLNETS[family]
    run_args = (*STEPS, "--controlnet", str(controlnet))
    # Flux's flow-matching img2img at 3 steps: a strength of 0.7 starts at sigma 1 (int(3 - 2.1) = 0
    # steps skipped), pure noise, where the image is not seen; 0.6 skips one
    strength = {"sd": 0.7, "flux": 0.6}[family]
    FIGURES[f"ControlNet img2img ({family})"] = check_image_rows(
        lambda: auto("Image2Image", folder, controlnet_model(controlnet)),
        folder,
        inputs,
        "prompt,image,control_image,strength,seed",
        [f"a red circle,image-{size}-{n}.png,edges-{size}-{n}.png,{strength},{n + 1}" for n in range(3)],
        run_args=run_args,
        swaps={"image": f"image-{size}-1.png", "control_image": f"edges-{size}-1.png", "strength": 1.0},
        name=f"controlnet-i2i-{family}",
    )
    assert made_in_batches_of(inputs, f"controlnet-i2i-{family}") == [3, 3, 3]
    FIGURES[f"ControlNet inpainting ({family})"] = check_image_rows(
        lambda: auto("Inpainting", folder, controlnet_model(controlnet)),
        folder,
        inputs,
        "prompt,image,mask,control_image,seed",
        [f"a red circle,image-{size}-{n}.png,mask-{size}-{n}.png,edges-{size}-{n}.png,{n + 1}" for n in range(3)],
        run_args=run_args,
        swaps={
            "image": f"image-{size}-1.png",
            "mask_image": f"mask-{size}-1.png",
            "control_image": f"edges-{size}-1.png",
        },
        name=f"controlnet-inpaint-{family}",
    )
    assert made_in_batches_of(inputs, f"controlnet-inpaint-{family}") == [3, 3, 3]


def test_inputs_of_two_sizes_batch_apart_and_equal_batch_1(inputs, tiny_family):
    from diffusers import AutoPipelineForImage2Image

    folder = tiny_family("sd")
    sizes = ["64", "48x64", "64", "48x64"]
    FIGURES["img2img, inputs of two sizes (sd)"] = check_image_rows(
        lambda: AutoPipelineForImage2Image.from_pretrained(folder),
        folder,
        inputs,
        "prompt,image,strength,seed",
        [f"a red circle,image-{size}-{n % 3}.png,0.7,{n + 1}" for n, size in enumerate(sizes)],
        run_args=STEPS,
        swaps={"image": "image-64-1.png"},
        name="two-sizes",
    )
    assert made_in_batches_of(inputs, "two-sizes") == [2, 2, 2, 2]  # not the first three rows together
    for record in ledger(inputs / "two-sizes-b3"):
        assert (record["width"], record["height"]) == (record["image"]["width"], record["image"]["height"])


def test_flux_kontext_rows_keep_their_size(inputs, tiny_family):
    """An edit at the input's size, a square one and a wide one (FluxKontextPipeline alone makes
    about a megapixel of either), equal to plain diffusers called with the ledger's call."""
    from diffusers import DiffusionPipeline

    folder = tiny_family("flux-kontext")
    sizes = ["32", "48x32", "32"]
    FIGURES["instruction edit (flux-kontext)"] = check_image_rows(
        lambda: DiffusionPipeline.from_pretrained(folder),
        folder,
        inputs,
        "prompt,image,seed",
        [f"make it blue,image-{size}-{n}.png,{n + 1}" for n, size in enumerate(sizes)],
        run_args=STEPS,
        swaps={"image": "image-32-1.png", "prompt": "two red squares"},
        name="kontext",
    )
    assert made_in_batches_of(inputs, "kontext") == [2, 1, 2]  # the two sizes in batches of their own
    for record in ledger(inputs / "kontext-b3"):
        width, height = record["image"]["width"], record["image"]["height"]
        assert (record["width"], record["height"]) == (width, height)
        assert record["call"]["max_area"] == width * height and record["call"]["_auto_resize"] is False
        with Image.open(inputs / "kontext-b3" / record["file"]) as made:
            assert made.size == (width, height)


@pytest.fixture
def processor_from_its_files(monkeypatch):
    """Qwen-Image-Edit's processor (Qwen2VLProcessor) made from its folder's files, as
    ``Qwen2VLProcessor.from_pretrained`` makes it where torchvision is installed (less the video
    part an edit does not use), and genbatch's check told torchvision is there: the stand-in for
    torchvision, which cannot be installed here, in genbatch's run and in plain diffusers."""
    from transformers import Qwen2VLProcessor

    from genbatch.pipelines import families
    from genbatch.pipelines.tiny_builds.qwen_image_edit import processor_without_video

    if not families.torchvision_installed():
        monkeypatch.setattr(families, "torchvision_installed", lambda: True)
        made = classmethod(lambda cls, folder, *args, **kwargs: processor_without_video(Path(folder)))
        monkeypatch.setattr(Qwen2VLProcessor, "from_pretrained", made)


@pytest.mark.slow  # each call encodes its image at 1024x1024 (~1 s on a quiet CPU): 11 of them
def test_qwen_image_edit_rows(inputs, tiny_family, processor_from_its_files):
    from diffusers import DiffusionPipeline

    from genbatch.pipelines.tiny_builds.qwen_image_edit import processor_without_video

    folder = tiny_family("qwen-image-edit")
    own = {} if HAS_TORCHVISION else {"processor": processor_without_video(folder)}  # as tests/test_tiny_image_inputs
    FIGURES["instruction edit (qwen-image-edit)"] = check_image_rows(
        lambda: DiffusionPipeline.from_pretrained(folder, **own),
        folder,
        inputs,
        "prompt,image,seed",
        [f"make it blue,image-64-{n}.png,{n + 1}" for n in range(3)],
        run_args=("--steps", "2"),
        swaps={"image": "image-64-1.png"},
        name="qwen-edit",
    )
    assert made_in_batches_of(inputs, "qwen-edit") == [3, 3, 3]


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed here")
def test_without_torchvision_qwen_image_edit_is_refused_before_it_loads(inputs, tiny_family, tmp_path):
    folder = tiny_family("qwen-image-edit")
    manifest = tmp_path / "edit.csv"
    manifest.write_text(f"prompt,image\nmake it blue,{inputs / 'image-64-0.png'}\n", encoding="utf-8")
    why = (
        "QwenImageEditPipeline's processor (Qwen2VLProcessor) needs torchvision, which is not installed here "
        "(transformers makes a processor with a video part only with torchvision, even to read images): "
        "pip install torchvision (the build matching your torch)"
    )
    checked = genbatch("validate", manifest, "--model", folder)
    assert checked.exit_code == 2 and why in checked.output, checked.output
    run = genbatch("run", manifest, "--model", folder, "--out", tmp_path / "out", "--steps", "2")
    assert run.exit_code == 2 and why in run.output and "loading" not in run.output, run.output
    assert not (tmp_path / "out").exists()


def test_qwen_image_edit_refuses_a_row_without_an_image_and_one_with_a_mask(
    inputs, tiny_family, tmp_path, processor_from_its_files
):
    image, mask = inputs / "image-64-0.png", inputs / "mask-64-0.png"
    manifest = tmp_path / "edit.csv"
    manifest.write_text(f"prompt,image,mask\nmake it blue,{image},\nno image,,\na mask,{image},{mask}\n")
    checked = genbatch("validate", manifest, "--model", tiny_family("qwen-image-edit"))
    assert checked.exit_code == 2
    assert (
        "edit.csv:3:image: qwen-image-edit (Qwen-Image-Edit) edits an input image and makes none without one; "
        "give this row an image"
    ) in checked.output, checked.output
    # diffusers' QwenImageEditInpaintPipeline makes ~1024x1024 whatever height and width it is given
    assert (
        "edit.csv:4:mask: qwen-image-edit (Qwen-Image-Edit): its inpainting pipeline, QwenImageEditInpaintPipeline, "
        "makes about a megapixel whatever size is asked, not the row's size; genbatch does not run it; remove it here"
    ) in checked.output, checked.output
    assert "edit.csv:2" not in checked.output


def test_a_strength_on_an_edit_model_is_refused_at_its_row(inputs, tiny_family):
    """Flux Kontext edits the whole image as the prompt says: it takes no strength, and a row or
    --strength that gives one would be recorded in the key and ignored."""
    manifest = inputs / "kontext-strength.csv"
    manifest.write_text("prompt,image,strength\nmake it blue,image-32-0.png,0.5\n", encoding="utf-8")
    model = tiny_family("flux-kontext")
    result = genbatch("validate", manifest, "--model", model)
    assert result.exit_code == 2
    assert f"{manifest}:2:strength: flux-kontext (FluxKontextPipeline) takes no strength" in result.output
    assert "(FluxKontextPipeline) takes no strength: it edits the image as the prompt says" in result.output
    manifest.write_text("prompt,image\nmake it blue,image-32-0.png\n", encoding="utf-8")
    assert genbatch("validate", manifest, "--model", model).exit_code == 0


def test_a_strength_that_skips_no_step_on_flux_is_said_before_the_run(inputs, tiny_family):
    """Flux's image-to-image skips int(steps - steps x strength) steps: at 3 steps, 0.7 skips none
    and starts from pure noise (the image unused), which validate and run say; SD's skips
    steps - int(steps x strength), one at 0.7, and nothing is said."""
    manifest = inputs / "flux-strength.csv"
    manifest.write_text("prompt,image,strength\na red circle,image-32-0.png,0.7\n", encoding="utf-8")
    said = genbatch("validate", manifest, "--model", tiny_family("flux"), "--set", "steps=3")
    assert said.exit_code == 0
    assert "strength 0.7 of 3 steps skips no step" in said.output and "give 4 steps or more" in said.output
    quiet = genbatch("validate", manifest, "--model", tiny_family("sd"), "--set", "steps=3")
    assert quiet.exit_code == 0 and "skips no step" not in quiet.output
