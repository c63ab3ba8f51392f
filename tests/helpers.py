"""Small helpers the CLI tests share."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from genbatch.cli.app import app

# Fast settings for the tiny noise model: 2 steps, 64x64.
FAST = ["--model", "tiny-random", "--steps", "2", "--quiet"]


def genbatch(*args: str | Path, input: str | None = None):
    """Run the CLI in-process, as a user would type it."""
    result = CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)
    return result


def genbatch_process(*args: str | Path, cwd: Path | None = None, **kwargs) -> subprocess.Popen:
    """Run the CLI as a real process (for signals, kills and locks)."""
    return subprocess.Popen(
        [sys.executable, "-m", "genbatch", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def ledger(out: Path) -> list[dict]:
    path = out / "genbatch.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def images(out: Path) -> list[Path]:
    return sorted(
        p for p in out.rglob("*") if p.suffix in (".png", ".webp", ".jpg") and ".genbatch-thumbs" not in p.parts
    )


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def diffusers_images(folder, records, extra, device: str = "cpu") -> dict[int, np.ndarray]:
    """Plain diffusers' image for each ledger record (its prompt, parameters and
    ``generator=torch.Generator("cpu").manual_seed(seed)``) on ``device``, by seed."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder).to(device)
    pipe.set_progress_bar_config(disable=True)
    found = {}
    for r in records:
        out = pipe(
            prompt=r["prompt"],
            num_inference_steps=r["steps"],
            guidance_scale=r["guidance_scale"],
            height=r["height"],
            width=r["width"],
            generator=torch.Generator("cpu").manual_seed(r["seed"]),
            output_type="np",
            **extra,
        )
        found[r["seed"]] = (out.images[0] * 255).round().astype(np.int16)
    return found
