"""`genbatch eval`: metrics of a run's images, on tiny random networks, offline.

FID and IS run on a tiny convolutional feature network (torchmetrics takes a custom one),
CLIP score on a tiny random CLIP saved to a folder; their figures mean nothing, but every
step from the ledger to eval.json is the real one, and each figure is checked against the
maintained implementation fed the same images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FAST, genbatch, ledger, pixels
from PIL import Image

from genbatch.errors import GenbatchError
from genbatch.evaluate import EvalOptions, evaluate_run, report_section
from genbatch.evaluate.shapes_judge import score
from genbatch.evaluate.shapes_scene import parse_caption


class TinyFeatures(torch.nn.Module):
    """A stand-in for Inception: uint8 images -> (pool features (N, 16), logits (N, 10))."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
        self.head = torch.nn.Linear(16, 10)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool = self.body(images.float() / 255)
        return pool, self.head(pool)


class Part(torch.nn.Module):
    """One output of TinyFeatures, as torchmetrics' own metrics take it."""

    def __init__(self, network: TinyFeatures, index: int) -> None:
        super().__init__()
        self.network, self.index = network, index
        self.num_features = 16 if index == 0 else 10

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)[self.index].double()


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from genbatch.pipelines.tiny_tokenizers import write_clip_tokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    write_clip_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _manifest(path: Path, prompts: list[str]) -> Path:
    path.write_text("prompt\n" + "".join(f"{p}\n" for p in prompts), encoding="utf-8")
    return path


PROMPTS = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A tiny-model run: three prompts, two seeds each."""
    base = tmp_path_factory.mktemp("tiny-run")
    os.environ["GENBATCH_HOME"] = str(tiny_model.parent.parent)
    out = base / "out"
    result = genbatch("run", _manifest(base / "prompts.csv", PROMPTS), "--out", out, "-n", "2", *FAST)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 'real' images: smooth colour gradients, unlike the tiny model's noise."""
    folder = tmp_path_factory.mktemp("reference")
    ramp = np.linspace(0, 255, 64, dtype=np.float64)
    for i in range(5):
        rgb = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (64, 1)), np.full((64, 64), 40.0 * i)], -1)
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"real-{i}.png")
    return folder


def _images_tensor(paths: list[Path]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(pixels(p).astype(np.uint8)).permute(2, 0, 1) for p in paths])


def test_fid_is_clip_and_diversity_end_to_end(tiny_run: Path, tiny_clip: Path, reference: Path):
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from transformers import CLIPModel, CLIPProcessor

    network = TinyFeatures()
    result = evaluate_run(
        tiny_run,
        EvalOptions(
            metrics=("fid", "is", "clip", "diversity"),
            reference=str(reference),
            clip_model=str(tiny_clip),
            feature_network=network,
            device="cpu",
        ),
    )
    written = json.loads((tiny_run / "eval.json").read_text())
    assert written["groups"] == result.report["groups"]
    [group] = written["groups"]
    assert group["group"] == {"model": "tiny-random"} and group["images"] == 6
    assert written["reference"]["images"] == 5

    # FID and IS: torchmetrics fed the same images through the same network directly
    files = [tiny_run / i["file"] for i in written["images"]]
    fid = FrechetInceptionDistance(feature=Part(network, 0))
    fid.update(_images_tensor(sorted(reference.glob("*.png"))), real=True)
    fid.update(_images_tensor(files), real=False)
    assert group["fid"] == pytest.approx(float(fid.compute()), rel=1e-6) and group["fid"] > 0
    inception = InceptionScore(feature=Part(network, 1), splits=6)
    inception.update(_images_tensor(files))
    torch.manual_seed(0)
    mean, std = inception.compute()
    assert group["is"]["mean"] == pytest.approx(float(mean), rel=1e-6)
    assert group["is"]["std"] == pytest.approx(float(std), rel=1e-6, abs=1e-9)

    # CLIP score: per image, 100 x cosine of CLIP's own forward pass (its logits over the logit scale)
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip)
    raw = []
    for entry, file in zip(written["images"], files):
        inputs = processor(
            text=[entry["prompt"]], images=[pixels(file).astype(np.uint8)], return_tensors="pt", padding=True
        )
        with torch.no_grad():
            output = model(**inputs)
        raw.append(100 * float(output.logits_per_image[0, 0] / model.logit_scale.exp().detach()))
        assert entry["clip"] == pytest.approx(max(raw[-1], 0.0), abs=1e-4)
    assert group["clip"] == pytest.approx(max(float(np.mean(raw)), 0.0), abs=1e-4)

    # diversity: the two seeds of each prompt differ, in pixels and in features
    pairs = {}
    for entry, file in zip(written["images"], files):
        pairs.setdefault(entry["prompt"], []).append(pixels(file) / 255)
    expected = np.mean([np.abs(a - b).mean() for a, b in pairs.values()])
    assert group["diversity"]["pixel"] == {"value": pytest.approx(expected, rel=1e-9), "prompts": 3}
    assert expected > 0.01
    assert group["diversity"]["feature"]["prompts"] == 3 and group["diversity"]["feature"]["value"] > 0

    # the report's section: a row per group, per-image CLIP scores worst first
    section = report_section(tiny_run)
    assert [c["id"] for c in section["columns"]][:4] == ["images", "fid", "is", "clip"]
    assert section["rows"][0]["cells"]["fid"] == group["fid"]
    scores = [i["clip"] for i in section["clip"]]
    assert (
        scores == sorted(scores)
        and len(scores) == 6
        and {i["file"] for i in section["clip"]} == {f.name for f in files}
    )


def test_a_rerun_gives_the_same_numbers_and_computes_nothing(
    tiny_run: Path, tiny_clip: Path, reference: Path, genbatch_home: Path, tmp_path: Path
):
    options = EvalOptions(
        metrics=("fid", "is", "clip", "diversity"),
        reference=str(reference),
        clip_model=str(tiny_clip),
        feature_network=TinyFeatures(),
        device="cpu",
    )
    first = evaluate_run(tiny_run, options)
    [stats] = (genbatch_home / "eval-reference").glob("*.npz")
    made = stats.stat().st_mtime_ns
    second = evaluate_run(tiny_run, options)
    assert second.report["groups"] == first.report["groups"] and second.report["images"] == first.report["images"]
    assert set(second.computed.values()) == {0}
    assert stats.stat().st_mtime_ns == made  # the reference statistics were read, not computed again
    # the same statistics saved as a .npz of mu and sigma give the same FID
    with np.load(stats) as data:
        np.savez(tmp_path / "reference.npz", mu=data["mu"], sigma=data["sigma"])
    from_npz = evaluate_run(
        tiny_run,
        EvalOptions(
            metrics=("fid",), reference=str(tmp_path / "reference.npz"), feature_network=TinyFeatures(), device="cpu"
        ),
    )
    assert from_npz.report["groups"][0]["fid"] == pytest.approx(first.report["groups"][0]["fid"], rel=1e-9)
    np.savez(tmp_path / "other.npz", mu=np.zeros(4), sigma=np.eye(4))
    with pytest.raises(GenbatchError, match="do not fit the feature network's 16 features"):
        evaluate_run(
            tiny_run,
            EvalOptions(
                metrics=("fid",), reference=str(tmp_path / "other.npz"), feature_network=TinyFeatures(), device="cpu"
            ),
        )
    # another feature network is another cache: everything is computed again
    other = TinyFeatures()
    torch.nn.init.normal_(other.head.weight)
    third = evaluate_run(tiny_run, EvalOptions(metrics=("is",), feature_network=other, device="cpu"))
    assert third.computed == {"custom-features": 6}


def test_only_new_images_are_computed_after_adding_images(tmp_path: Path, tiny_model: Path, tiny_clip: Path):
    out = tmp_path / "out"
    manifest = _manifest(tmp_path / "prompts.csv", PROMPTS[:2])
    assert genbatch("run", manifest, "--out", out, "-n", "2", *FAST).exit_code == 0
    first = genbatch("eval", out, "--metrics", "clip,diversity", "--clip-model", tiny_clip, "--device", "cpu")
    assert first.exit_code == 0, first.output
    assert "computed now: clip 4, pixels 4" in first.stderr
    assert "model=tiny-random (4 images)" in first.stdout

    _manifest(manifest, PROMPTS)  # one more prompt: two more images
    assert genbatch("run", manifest, "--out", out, "-n", "2", *FAST).exit_code == 0
    second = genbatch("eval", out, "--metrics", "clip,diversity", "--clip-model", tiny_clip, "--json")
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert report["computed"] == {"clip": 2, "pixels": 2}
    assert report["groups"][0]["images"] == 6 and report["groups"][0]["diversity"]["pixel"]["prompts"] == 3
    # an image regenerated under the same key (--force) is a new file (its metadata names the new run,
    # so its sha256 changes): it alone is computed again
    before = {r["key"]: r["sha256"] for r in ledger(out) if r["status"] == "done"}
    assert genbatch("run", manifest, "--out", out, "-n", "2", "--force", "--limit", "1", *FAST).exit_code == 0
    assert sum(r["sha256"] != before[r["key"]] for r in ledger(out)[-1:]) == 1
    third = json.loads(genbatch("eval", out, "--metrics", "clip", "--clip-model", tiny_clip, "--json").stdout)
    assert third["computed"] == {"clip": 1}


def test_groups_by_manifest_column_and_steps(tmp_path: Path, tiny_model: Path, tiny_clip: Path):
    out = tmp_path / "out"
    manifest = tmp_path / "prompts.csv"
    manifest.write_text(
        "prompt,set,steps\na red fox,animals,1\na grey wolf,animals,2\na lighthouse,places,2\n", encoding="utf-8"
    )
    assert genbatch("run", manifest, "--out", out, "--model", "tiny-random", "--quiet").exit_code == 0
    result = genbatch(
        "eval", out, "--metrics", "clip", "--clip-model", tiny_clip, "--by", "set", "--by", "steps", "--json"
    )
    assert result.exit_code == 0, result.output
    groups = {tuple(g["group"].values()): g["images"] for g in json.loads(result.stdout)["groups"]}
    assert groups == {("animals", 1): 1, ("animals", 2): 1, ("places", 2): 1}
    bad = genbatch("eval", out, "--metrics", "clip", "--clip-model", tiny_clip, "--by", "colour")
    assert bad.exit_code == 2 and "--by 'colour'" in bad.stderr and "set" in bad.stderr


SHAPE_PROMPTS = [
    "a large red circle on a blue background",
    "a red circle left of a blue square on a white background",
    "two blue circles on a yellow background",
    "a green triangle",
    "a photo of a cat",
]


def test_the_shapes_judge_through_genbatch_eval(tmp_path: Path):
    out = tmp_path / "shapes"
    run = genbatch("run", _manifest(tmp_path / "shapes.csv", SHAPE_PROMPTS), "--out", out, "--quiet")
    assert run.exit_code == 0, run.output
    result = genbatch("eval", out, "--metrics", "shapes,diversity", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [group] = report["groups"]
    shapes = group["shapes"]
    assert group["group"] == {"model": "shapes"}
    assert shapes["judged"] == 4 and shapes["unparsed"] == 1  # "a photo of a cat" is not in the grammar
    assert shapes["color"]["n"] == 4 and shapes["relation"]["n"] == 1 and shapes["count"]["n"] == 1
    assert shapes["background"]["n"] == 4 and shapes["size"]["n"] == 1
    # each image is judged against its own prompt
    verdicts = {i["prompt"]: i["shapes"] for i in report["images"]}
    for entry in report["images"]:
        image = pixels(out / entry["file"]).astype(np.uint8)
        spec = parse_caption(entry["prompt"])
        assert verdicts[entry["prompt"]] == (None if spec is None else score(image, spec))
    right = [v["color"] for v in verdicts.values() if v]
    assert shapes["color"]["accuracy"] == pytest.approx(sum(right) / len(right))
    # one seed per prompt: no pair to measure diversity on
    assert group["diversity"]["pixel"] == {"value": None, "prompts": 0}
    assert "shapes all" in [c["label"] for c in report_section(out)["columns"]]
    # report.html shows the figures
    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="evaluation">' in page and "shapes all" in page and "Shapes judge: failures first" in page
    # a run of the shapes model gets these metrics by default (no weights needed)
    default = genbatch("eval", out, "--json")
    assert default.exit_code == 0 and json.loads(default.stdout)["groups"] == report["groups"]


def test_clear_errors_for_empty_runs_bad_options_and_missing_weights(
    tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch
):
    def fails(*args: str | Path) -> str:
        result = genbatch("eval", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and result.stderr.count("\n") == 1, result.stderr
        return result.stderr

    assert "no genbatch.jsonl here" in fails(tmp_path)
    (tmp_path / "genbatch.jsonl").write_text(json.dumps({"key": "k", "status": "failed", "error": "x"}) + "\n")
    assert "no done images to evaluate (the ledger has 1 records" in fails(tmp_path)
    assert "unknown metric ssim" in fails(tiny_run, "--metrics", "clip,ssim")
    assert "--metrics fid needs --reference" in fails(tiny_run, "--metrics", "fid")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    message = fails(tiny_run, "--metrics", "is")
    assert "weights-inception-2015-12-05-6726825d.pth" in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in message
    assert "no such file" in fails(tiny_run, "--metrics", "is", "--inception-weights", tmp_path / "absent.pth")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    message = fails(tiny_run, "--metrics", "clip", "--clip-model", "openai/clip-vit-base-patch32")
    assert "huggingface-cli download openai/clip-vit-base-patch32" in message
    assert "no config.json" in fails(tiny_run, "--metrics", "clip", "--clip-model", tmp_path)
    assert "no such file or folder" in fails(tiny_run, "--metrics", "fid", "--reference", tmp_path / "absent")


def test_the_inception_network_from_a_weights_file(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """torch-fidelity's Inception, with random weights saved where --inception-weights points."""
    pytest.importorskip("torch_fidelity", exc_type=ImportError)
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with monkeypatch.context() as patch:  # build the architecture without its weights file
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state, strict=True: None)
        patch.setattr(torch, "load", lambda *args, **kwargs: {})
        torch.manual_seed(0)
        network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="-")
    weights = tmp_path / "inception.pth"
    torch.save(network.state_dict(), weights)
    result = genbatch("eval", tiny_run, "--metrics", "is,diversity", "--inception-weights", weights, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["networks"]["features"]["name"] == "inception-2015-12-05"
    [group] = report["groups"]
    assert group["is"]["mean"] >= 1.0 and group["diversity"]["feature"]["prompts"] == 3
