"""The seed contract: an image depends on its seed and settings, never on its neighbours."""

from __future__ import annotations

import numpy as np
from helpers import FAST, genbatch, ledger, pixels

from genbatch.manifest.read import Row
from genbatch.pipelines.model_lookup import resolve_model
from genbatch.plan.planner import Defaults, Target, expand_jobs, select


def by_seed(out):
    return {r["seed"]: pixels(out / r["file"]) for r in ledger(out) if r["status"] == "done"}


def test_batch_of_four_equals_four_batches_of_one(tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,seed\n" + "".join(f"prompt {i},{100 + i}\n" for i in range(4)))
    genbatch("run", manifest, "--out", tmp_path / "b1", "--batch-size", "1", *FAST)
    genbatch("run", manifest, "--out", tmp_path / "b4", "--batch-size", "4", *FAST)
    alone, batched = by_seed(tmp_path / "b1"), by_seed(tmp_path / "b4")
    assert sorted(alone) == sorted(batched) == [100, 101, 102, 103]
    for seed in alone:
        # CPU float maths can differ in the last bit between batch shapes; after rounding
        # to 8 bits that is at most one level. In practice the PNGs are identical.
        assert np.abs(alone[seed] - batched[seed]).max() <= 1, seed


def test_same_seed_same_image_across_runs_and_different_seeds_differ(tmp_path):
    manifest = tmp_path / "p.txt"
    manifest.write_text("one prompt\n")
    genbatch("run", manifest, "--out", tmp_path / "a", "--num-images", "2", *FAST)
    genbatch("run", manifest, "--out", tmp_path / "b", "--num-images", "2", *FAST)
    a, b = by_seed(tmp_path / "a"), by_seed(tmp_path / "b")
    assert sorted(a) == sorted(b)
    first, second = sorted(a)
    assert second == first + 1  # image k of a row with seed s uses s + k
    assert np.array_equal(a[first], b[first])
    assert not np.array_equal(a[first], a[second])


def rows(*prompts: str) -> list[Row]:
    return [Row(index=i, line=i + 2, prompt=p) for i, p in enumerate(prompts)]


def seeds_of(jobs) -> set[tuple[str, int, int]]:
    return {(j.prompt, j.k, j.seed) for j in jobs}


def seed(jobs, prompt: str, k: int = 0) -> int:
    (found,) = {s for p, kk, s in seeds_of(jobs) if p == prompt and kk == k}
    return found


def test_derived_seeds_ignore_other_rows_limit_and_shard(tiny_model):
    models = {None: resolve_model("tiny-random")}
    target = Target("torch", "fp32")
    defaults = Defaults(seed=7, num_images=2)
    jobs = expand_jobs(rows("a", "b", "c", "a"), models, defaults, target)
    full = seeds_of(jobs)
    assert len(full) == 8
    assert seeds_of(expand_jobs(rows("c", "a", "b", "a"), models, defaults, target)) == full
    assert seed(expand_jobs(rows("b"), models, defaults, target), "b") == seed(jobs, "b")
    shards = [select(jobs, (i, 3), None) for i in (1, 2, 3)]
    assert sorted(j.index for shard in shards for j in shard) == list(range(len(jobs)))
    assert all(seeds_of(shard) <= full for shard in shards)
    # A repeated prompt gets a different seed for its second occurrence.
    occurrences = [j.seed for j in jobs if j.prompt == "a" and j.k == 0]
    assert len(set(occurrences)) == 2
    # Another base seed gives other seeds.
    assert seed(expand_jobs(rows("a"), models, Defaults(seed=8), target), "a") != seed(
        expand_jobs(rows("a"), models, defaults, target), "a"
    )


def test_limit_and_shard_from_the_cli(tmp_path):
    manifest = tmp_path / "p.txt"
    manifest.write_text("".join(f"prompt {i}\n" for i in range(6)))
    genbatch("run", manifest, "--out", tmp_path / "all", *FAST)
    everything = {r["key"]: r for r in ledger(tmp_path / "all")}
    shard_keys: set[str] = set()
    for i in (1, 2):
        out = tmp_path / f"shard{i}"
        genbatch("run", manifest, "--out", out, "--shard", f"{i}/2", *FAST)
        shard_keys |= {r["key"] for r in ledger(out)}
    assert shard_keys == set(everything)
    genbatch("run", manifest, "--out", tmp_path / "lim", "--limit", "2", *FAST)
    limited = ledger(tmp_path / "lim")
    assert sorted(r["index"] for r in limited) == [0, 1]  # ledger lines come in the order writes finish
    assert all(everything[r["key"]]["file"] == r["file"] for r in limited)


def test_pixels_made_on_an_accelerator_are_the_bytes_numpy_makes():
    """On a GPU the pipeline's images are made uint8 where they are (backends.base.tensor_to_uint8);
    on the CPU by numpy, from the array diffusers' output_type="np" gives. Same float32
    arithmetic, so the same bytes and the same failures (NaN, all black), halves included."""
    import torch

    from genbatch.backends.base import tensor_to_uint8, to_uint8

    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    images[1] = float("nan")
    images[2] = 0.0
    images[3, :, 0, :] = torch.arange(32) / 510.0 + 0.5 / 255.0  # exact halves before rounding
    for batch in (images, images.half()):
        on_device, device_errors = tensor_to_uint8(batch)
        by_numpy, numpy_errors = to_uint8(batch.permute(0, 2, 3, 1).float().numpy())
        assert device_errors == numpy_errors
        assert [e is None for e in numpy_errors] == [True, False, False, True, True, True]
        for a, b in zip(on_device, by_numpy):
            assert (a is None and b is None) or (a.dtype == np.uint8 and np.array_equal(a, b))
