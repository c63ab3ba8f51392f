"""The family contract, shared by every family's tests: a CLI run makes the images; an image is
the same alone or in a batch; it equals what plain diffusers returns for the same prompt,
parameters and ``generator=torch.Generator("cpu").manual_seed(seed)`` (also when called with a
ledger line's recorded ``call``); a rerun generates nothing; the ledger says the family.

And the tiny build must respond to what the test compares: :func:`moves` measures how far a
change of one input (the prompt, the negative prompt, guidance) moves plain diffusers' image,
so a family test can assert its build is not too flat to fail."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from helpers import diffusers_images, genbatch, ledger, pixels
from PIL import Image

PROMPTS = [("a red circle", 11), ("two blue squares", 12), ("a green triangle left of a cross", 13)]
SENSITIVE = 8  # levels (0-255) a tiny build must move when its text or guidance changes


def by_seed(out: Path) -> dict[int, np.ndarray]:
    return {r["seed"]: pixels(out / r["file"]) for r in ledger(out) if r["status"] == "done"}


def check_family_contract(
    folder: Path,
    family: str,
    extra: dict[str, Any],
    tmp_path: Path,
    *,
    run_args: tuple[str, ...] = (),
    columns: str = "",
    cells: tuple[str, ...] = (),
    steps: int = 2,
) -> dict[str, int]:
    """Run the contract on a tiny pipeline ``folder`` of ``family``; ``extra``: what plain
    diffusers needs besides prompt, size, steps and guidance (the family's documented
    settings); ``columns``/``cells``: extra manifest columns (",negative_prompt") and each
    row's cells (",ugly"). Returns the figures: batch 3 vs 1 and vs plain diffusers (max |d|)."""
    manifest = tmp_path / "prompts.csv"
    manifest.write_text(
        f"prompt,seed{columns}\n"
        + "".join(f"{p},{s}{cells[i] if cells else ''}\n" for i, (p, s) in enumerate(PROMPTS)),
        encoding="utf-8",
    )
    batched, alone = tmp_path / "batched", tmp_path / "alone"
    common = ("--model", folder, "--steps", str(steps), *run_args)
    result = genbatch("run", manifest, *common, "--batch-size", "3", "--out", batched, "--quiet")
    assert result.exit_code == 0, result.output
    records = ledger(batched)
    assert [r["status"] for r in records] == ["done"] * 3
    run = json.loads((batched / "run.json").read_text())
    assert run["backend_facts"]["family"] == run["models"][0]["family"] == family
    assert {r["family"] for r in records} == {family}
    with Image.open(batched / records[0]["file"]) as image:
        assert json.loads(image.info["genbatch"])["family"] == family

    # alone or in a batch: the same image
    single = genbatch("run", manifest, *common, "--batch-size", "1", "--out", alone, "--quiet")
    assert single.exit_code == 0, single.output
    in_batch, by_itself = by_seed(batched), by_seed(alone)
    assert sorted(in_batch) == sorted(by_itself) == [s for _, s in PROMPTS]
    batch_delta = max(int(np.abs(in_batch[s] - by_itself[s]).max()) for s in in_batch)
    assert batch_delta <= 1

    # plain diffusers, same prompt, parameters and CPU generator: the same image
    plain = diffusers_images(folder, records, extra)
    plain_delta = max(int(np.abs(in_batch[s] - plain[s]).max()) for s in in_batch)
    assert plain_delta <= 2
    print(f"\nfigures: {folder.name} ({family}): batch 3 vs 1 max |d| {batch_delta}, vs plain diffusers {plain_delta}")
    # the images are not all alike (a test that compares blanks would pass on anything)
    assert np.abs(in_batch[11] - in_batch[12]).max() > 10

    # the five lines of docs/models-and-families.md: plain diffusers from a ledger line
    r = records[1]
    pipe = plain_pipeline(Path(r["model_path"]))
    image = pipe(**r["call"], generator=torch.Generator("cpu").manual_seed(r["seed"])).images[0]
    assert np.abs(np.asarray(image, dtype=np.int16) - in_batch[r["seed"]]).max() <= 2

    # a rerun generates nothing
    rerun = genbatch("run", manifest, *common, "--out", batched)
    assert rerun.exit_code == 0 and "3 of 3 images are already done" in rerun.output
    assert len(ledger(batched)) == 3
    return {"batch": batch_delta, "plain": plain_delta}


@functools.cache
def plain_pipeline(folder: Path) -> Any:
    """``DiffusionPipeline.from_pretrained(folder)``, loaded once per session and folder."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def moves(folder: Path, call: dict[str, Any], change: dict[str, Any], seed: int = 11) -> int:
    """How far (max |d|, 0-255 levels) ``change`` moves plain diffusers' image of ``call``."""
    pipe = plain_pipeline(Path(folder))

    def image(kwargs: dict[str, Any]) -> np.ndarray:
        out = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
        return (out.images[0] * 255).round().astype(np.int16)

    return int(np.abs(image(call) - image({**call, **change})).max())
