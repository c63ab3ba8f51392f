"""The shapes model's data generator, caption grammar, checker and shipped folder."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training import checker as ck  # noqa: E402
from training import shapes_data as sd  # noqa: E402

MODEL = ROOT / "genbatch" / "pipelines" / "models" / "shapes"


@pytest.fixture(scope="module")
def scenes():
    images, captions, specs = sd.batch(random.Random(0), 150, say_background=0.6)
    return images, captions, specs


def test_checker_scores_ground_truth_perfectly(scenes):
    images, _, specs = scenes
    summary = ck.summarize([ck.score(im, s) for im, s in zip(images, specs)])
    for cat in ("color", "shape", "relation", "count", "background", "size"):
        assert summary[cat]["n"] > 0, cat
        assert summary[cat]["accuracy"] == 1.0, (cat, summary[cat])


def test_checker_scores_heldout_ground_truth_perfectly():
    pairs = sd.heldout_set(60)
    summary = ck.summarize([ck.score(sd.render(s), s) for s, _ in pairs])
    assert all(v["accuracy"] == 1.0 for v in summary.values() if v["n"]), summary


def test_checker_notices_wrong_answers(scenes):
    images, _, specs = scenes
    for im, spec in zip(images, specs):
        wrong_bg = next(c for c in sd.COLORS if c != spec["background"])
        assert ck.score(im, {**spec, "background": wrong_bg})["background"] is False
        objs = [dict(o) for o in spec["objects"]]
        objs[0]["shape"] = next(s for s in sd.SHAPES if s != objs[0]["shape"])
        assert ck.score(im, {**spec, "objects": objs})["shape"] is False
        if spec["kind"] == "relation":
            flipped = {"left": "right", "right": "left", "above": "below", "below": "above"}
            assert ck.score(im, {**spec, "relation": flipped[spec["relation"]]})["relation"] is False
        if spec["kind"] == "count":
            assert ck.score(im, {**spec, "count": spec["count"] % 3 + 1})["count"] is False


def test_checker_tolerates_soft_edges(scenes):
    from PIL import Image, ImageFilter

    images, _, specs = scenes
    soft = [np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(0.7))) for im in images]
    summary = ck.summarize([ck.score(im, s) for im, s in zip(soft, specs)])
    assert all(v["accuracy"] >= 0.97 for v in summary.values() if v["n"]), summary


def test_a_caption_that_names_no_background_asks_for_plain_grey(scenes):
    images, captions, specs = scenes
    unsaid = [(im, c, s) for im, c, s in zip(images, captions, specs) if not s["say_background"]]
    assert 30 < len(unsaid) < 90
    for image, caption, spec in unsaid:
        assert "background" not in caption and spec["background"] == sd.PLAIN_BACKGROUND
        assert ck.analyse(image)[0] == sd.PLAIN_BACKGROUND
    assert sd.parse_caption("two red circles")["background"] == sd.PLAIN_BACKGROUND
    # no object is grey and no caption says it
    assert sd.PLAIN_BACKGROUND not in sd.COLORS and sd.PLAIN_BACKGROUND not in sd.vocabulary()


def test_checker_on_a_blank_image_finds_nothing():
    image = np.zeros((64, 64, 3), np.uint8) + np.array(sd.COLORS["blue"], np.uint8)
    bg, blobs = ck.analyse(image)
    assert bg == "blue" and blobs == []


def test_grammar_covers_the_issue():
    assert {"red", "green", "blue", "yellow", "orange", "purple", "white", "black"} <= set(sd.COLORS)
    assert {"circle", "square", "triangle"} <= set(sd.SHAPES) and len(sd.SHAPES) >= 5
    assert set(sd.SIZES) == {"small", "medium", "large"}
    assert set(sd.RELATIONS) == {"left", "right", "above", "below"}
    assert set(sd.NUMBERS) == {1, 2, 3}
    assert "big" in sd.SIZE_WORDS["large"]
    rng = random.Random(1)
    pairs = [sd.sample_scene(rng) for _ in range(3000)]
    caps = [c for _, c in pairs]
    specs = [s for s, _ in pairs]
    assert "a large red circle on a blue background" in {sd.caption(s) for s in specs if s["kind"] == "single"} | {
        sd.caption(
            {
                "kind": "single",
                "background": "blue",
                "relation": None,
                "count": None,
                "objects": [{"color": "red", "shape": "circle", "size": "large"}],
            }
        )
    }
    assert any(c.startswith("a big ") for c in caps)
    assert any(" to the left of " in c for c in caps) and any(" left of " in c for c in caps)
    assert any(" above " in c for c in caps) and any(" below " in c for c in caps)
    assert {s["count"] for s in specs if s["kind"] == "count"} == {1, 2, 3}
    assert {s["background"] for s in specs} == set(sd.COLORS)
    assert {o["color"] for s in specs for o in s["objects"]} == set(sd.COLORS)
    for spec, cap in pairs[:500]:
        parsed = sd.parse_caption(cap)
        assert parsed is not None and sd.semantic_key(parsed) == sd.semantic_key(spec), cap
    assert sd.parse_caption("a red circle left of a blue square on a white background")["relation"] == "left"
    assert sd.parse_caption("a red circle left of a blue square")["say_background"] is False
    assert any("background" not in c for _, c in sd.heldout_set(100))


def test_heldout_captions_never_reach_training():
    rng = random.Random(2)
    train_keys = {sd.semantic_key(sd.sample_scene(rng, "train")[0]) for _ in range(2000)}
    held_keys = {sd.semantic_key(s) for s, _ in sd.heldout_set(300)}
    assert held_keys and not (train_keys & held_keys)
    assert all(sd.is_heldout(s) for s, _ in sd.heldout_set(50))


def test_generator_is_deterministic():
    a = sd.batch(random.Random(5), 8)
    b = sd.batch(random.Random(5), 8)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_training_loss_weights_the_latent_pixels_an_object_touches():
    from training.train_shapes import foreground_mask

    # a 14-pixel square at x 8..21, y 12..25: with 4x down-sampling, latent columns 2..5
    # and rows 3..6 hold part of it; every other latent pixel is pure background
    spec = {
        "kind": "single",
        "background": "white",
        "relation": None,
        "count": None,
        "objects": [{"color": "red", "shape": "square", "size": "small", "box": [8, 12, 14]}],
    }
    mask = foreground_mask(sd.render(spec)[None], ["white"], 4)
    assert mask.shape == (1, 1, 16, 16)
    rows, cols = np.nonzero(mask[0, 0].numpy())
    assert set(rows) == {3, 4, 5, 6} and set(cols) == {2, 3, 4, 5} and len(rows) == 16


def test_training_loss_keeps_high_noise_steps_in_play():
    from diffusers import DDPMScheduler

    from training.train_shapes import timestep_weights

    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    w = timestep_weights(sched, gamma=5.0)
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)
    # near pure noise, where the layout is decided: plain v-loss, not min-SNR's ~0
    assert w[999] == pytest.approx(1.0) and w[600] == pytest.approx(1.0)
    # near clean latents: the clean-latent error is weighted gamma, as min-SNR caps it
    assert float(w[0] * (snr[0] + 1)) == pytest.approx(5.0)
    assert bool((w[1:] >= w[:-1]).all()), "weights never fall as noise grows"


def test_shipped_folder_layout():
    assert MODEL.is_dir(), "genbatch/pipelines/models/shapes is missing"
    meta = json.loads((MODEL / "genbatch.json").read_text())
    assert meta["name"] == "shapes" and meta["width"] == meta["height"] == 64
    assert meta["steps"] >= 1 and meta["guidance_scale"] >= 1
    tok_cfg = json.loads((MODEL / "tokenizer" / "tokenizer_config.json").read_text())
    assert tok_cfg["model_max_length"] <= 77
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        assert (MODEL / "tokenizer" / name).is_file()
    index = json.loads((MODEL / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    assert not list(MODEL.rglob("*.bin")), "weights must be safetensors"
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size <= 25 * 1024 * 1024


def test_shipped_model_generates_64px_images():
    pytest.importorskip("diffusers")
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(MODEL / "tokenizer")
    for word in sd.vocabulary():
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word

    pipe = StableDiffusionPipeline.from_pretrained(MODEL, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    shape = (1, pipe.unet.config.in_channels, 64 // pipe.vae_scale_factor, 64 // pipe.vae_scale_factor)
    latents = torch.cat([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in (0, 1)])
    out = pipe(
        prompt=["a large red circle on a blue background"] * 2,
        negative_prompt=[""] * 2,
        num_inference_steps=2,
        guidance_scale=3.0,
        latents=latents,
        output_type="np",
    ).images
    assert out.shape == (2, 64, 64, 3)
    assert np.isfinite(out).all()


def _one(shape: str, box: list[int], color: str = "red", background: str = "blue") -> dict:
    return sd.single_spec(background, color, shape, "small", box)


def test_semantic_latents_say_where_how_big_and_what():
    from training import semantic_latents as sl

    # a 14-pixel box at x 8..21, y 12..25: latent columns 2..5 and rows 3..6 (4x4 patches);
    # column 5 and row 6 hold 2 of its 4 pixels per side
    z = sl.of_spec(_one("triangle", [8, 12, 14]))
    assert z.shape == (sl.CHANNELS, 16, 16)
    blue, red = (np.array(sd.PALETTE[c]) / 127.5 - 1 for c in ("blue", "red"))
    assert np.allclose(z[sl.BACKGROUND], blue[:, None, None], atol=1e-6)
    touched = np.zeros((16, 16), bool)
    touched[3:7, 2:6] = True
    coverage = (z[sl.COVERAGE[0]] + 1) / 2
    assert coverage[3, 2] == 1.0 and coverage[6, 5] == 0.25 and coverage[3, 5] == 0.5
    assert (coverage[~touched] == 0).all()
    # what the object is, the whole latent says, as it says the background
    assert np.allclose(z[sl.COLOR[0]], red[:, None, None])
    assert (z[sl.SHAPE[0]][sd.SHAPES.index("triangle")] == 1).all() and (z[sl.SHAPE[0]].sum(0) == 1).all()
    # the other slots are empty
    for k in (1, 2):
        assert (z[sl.COVERAGE[k]] == -1).all() and (z[sl.COLOR[k]] == 0).all() and (z[sl.SHAPE[k]] == 0).all()

    # another shape in the same box changes only the one-hot
    other = sl.of_spec(_one("circle", [8, 12, 14]))
    differs = np.nonzero((other != z).any(axis=(1, 2)))[0].tolist()
    assert differs == [sl.SHAPE[0].start + sd.SHAPES.index(s) for s in ("circle", "triangle")]


def _relation(relation: str, first: tuple, second: tuple) -> dict:
    return {
        "kind": "relation",
        "background": "white",
        "relation": relation,
        "count": None,
        "objects": [{"color": c, "shape": s, "size": "small", "box": b} for c, s, b in (first, second)],
    }


def test_semantic_latents_put_a_relation_in_slots_by_where_the_objects_are():
    from training import semantic_latents as sl

    square, cross = ("red", "square", [4, 20, 14]), ("green", "cross", [19, 20, 14])
    z = sl.of_spec(_relation("left", square, cross))
    # the same picture said the other way round gives the same latents: left object first
    assert np.array_equal(sl.of_spec(_relation("right", cross, square)), z)
    assert z[sl.SHAPE[0]][sd.SHAPES.index("square")].all() and z[sl.SHAPE[1]][sd.SHAPES.index("cross")].all()
    # each slot's coverage is its own box: columns 1..4 and 4..8, both touching column 4
    assert np.nonzero(z[sl.COVERAGE[0]][5] > -1)[0].tolist() == [1, 2, 3, 4]
    assert np.nonzero(z[sl.COVERAGE[1]][5] > -1)[0].tolist() == [4, 5, 6, 7, 8]
    # stacked: the top object first
    top, bottom = ("blue", "circle", [20, 4, 14]), ("red", "diamond", [22, 30, 14])
    stacked = sl.of_spec(_relation("below", bottom, top))
    assert stacked[sl.SHAPE[0]][sd.SHAPES.index("circle")].all()


def test_semantic_latents_give_each_object_of_a_count_its_own_slot_left_to_right():
    from training import semantic_latents as sl

    # listed right, left, middle; the middle one is the highest, the left one the lowest
    spec = {
        "kind": "count",
        "background": "white",
        "relation": None,
        "count": 3,
        "objects": [
            {"color": "red", "shape": "circle", "size": "small", "box": b}
            for b in ([44, 20, 14], [4, 44, 14], [24, 4, 14])
        ],
    }
    z = sl.of_spec(spec)
    assert [float(z[sl.COVERAGE[k]][row, col]) for k, (row, col) in enumerate([(12, 2), (2, 7), (6, 12)])] == [1.0] * 3
    assert all((z[sl.COVERAGE[k]] > -1).sum() == 16 for k in range(3))  # one 4x4-patch box each
    assert all(np.array_equal(z[sl.COLOR[k]], z[sl.COLOR[0]]) for k in (1, 2))


def _training_scenes(kind: str, seed: int, draws: int = 400):
    """The specs of one kind among `draws` training scenes."""
    rng = random.Random(seed)
    return [s for s, _ in (sd.sample_scene(rng) for _ in range(draws)) if s["kind"] == kind]


def test_a_count_puts_its_objects_in_columns():
    seen = set()
    for spec in _training_scenes("count", seed=5):
        n = spec["count"]
        centres = [b[0] + b[2] / 2 for b in (o["box"] for o in spec["objects"])]
        assert [int(c // (64 / n)) for c in centres] == list(range(n)), spec
        seen.add(n)
    assert seen == {1, 2, 3}


def test_a_relation_puts_the_first_named_object_in_the_half_it_names():
    seen = set()
    for spec in _training_scenes("relation", seed=3):
        first, second = ([b[0] + b[2] / 2, b[1] + b[2] / 2] for b in (o["box"] for o in spec["objects"]))
        axis, sign = {"left": (0, 1), "right": (0, -1), "above": (1, 1), "below": (1, -1)}[spec["relation"]]
        assert sign * (first[axis] - 32) < 0 < sign * (second[axis] - 32), spec
        seen.add(spec["relation"])
    assert seen == {"left", "right", "above", "below"}


def test_semantic_encoder_reads_without_spread():
    pytest.importorskip("diffusers")
    import torch
    from diffusers import AutoencoderKL

    from training import semantic_latents as sl

    vae = AutoencoderKL(
        block_out_channels=(8,),
        norm_num_groups=1,
        latent_channels=sl.CHANNELS,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
    )
    sl.make_encoder_certain(vae)
    dist = vae.encode(torch.rand(2, 3, 16, 16) * 2 - 1).latent_dist
    assert float(dist.std.max()) < 0.01
    assert torch.allclose(dist.sample(), dist.mean, atol=0.05)
