"""``genbatch bench``: genbatch against the plain loop a user would write, in the same run.

For each backend x image size x batch size, :func:`run_bench` runs ``genbatch run`` and the
plain diffusers loop (load the pipeline, call it on each batch of prompts, ``image.save`` each
PNG) as processes of their own (:mod:`genbatch.bench.worker`), after one untimed warm-up
process, alternating which goes first in each repeat so a noisy neighbour hits both alike,
and keeps the medians. It measures images/s
and s/image over the whole process (start-up, model load and end-of-run reports included),
time to the first image on disk, peak RSS and peak GPU memory, and the runner's overhead:
how much longer genbatch's whole process takes than the plain loop's (which starts the same
interpreter and libraries), as a share of the plain loop's pipeline calls; negative when
genbatch finishes first. It writes ``bench.json`` and ``bench.png`` (images/s against batch size).

``model`` is any diffusers folder (or a built-in name), or ``sd15``, ``sdxl``,
``flux-schnell``: the released architecture with random weights, built on the device
(:mod:`genbatch.pipelines.architectures`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genbatch.errors import GenbatchError


@dataclass
class BenchOptions:
    model: str
    out: Path
    backends: list[str] = field(default_factory=lambda: ["torch"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4, 8])
    sizes: list[int] | None = None  # square image sizes; None: the model's own
    images: int = 64
    steps: int | None = None  # None: the model's own
    device: str = "auto"
    dtype: str = "auto"
    repeats: int = 3
    warm_up: bool = True  # one untimed process first: the measured ones start on a warm machine
    torch_options: dict[str, Any] = field(default_factory=dict)  # genbatch's fast paths (--compile...)
    keep_images: bool = False


def resolve_bench_model(model: str, work: Path) -> Path:
    """A model folder: the folder or built-in name as ``genbatch run`` takes it, or a released
    architecture (sd15, sdxl, flux-schnell) written config-only into ``work``."""
    from genbatch.pipelines.architectures import names, write_architecture
    from genbatch.pipelines.model_lookup import resolve_model

    if model in names():
        return write_architecture(model, work / f"{model}-random")
    return resolve_model(model).path


def _worker(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one measurement in its own process; its whole wall time is measured here."""
    spec_file = work / f"spec-{spec['side']}-{time.monotonic_ns()}.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "genbatch.bench.worker", str(spec_file)], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        log = Path(spec["out"]).parent.parent / f"failed-{spec['side']}-b{spec['batch_size']}.log"
        log.write_text(done.stdout + done.stderr, encoding="utf-8")
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:] or ["no output"]
        raise GenbatchError(f"bench: the {spec['side']} measurement failed ({log}): " + " | ".join(tail))
    found = json.loads(done.stdout.strip().splitlines()[-1])
    found["wall_seconds"] = wall
    return found


def _median(runs: list[dict[str, Any]], name: str) -> float | None:
    values = [r[name] for r in runs if r.get(name) is not None]
    return statistics.median(values) if values else None


def _summary(runs: list[dict[str, Any]], images: int) -> dict[str, Any]:
    wall = _median(runs, "wall_seconds") or float("nan")
    return {
        "images_per_s": images / wall,
        "s_per_image": wall / images,
        "wall_seconds": wall,
        "first_image_seconds": _median(runs, "first_image_seconds"),
        "peak_rss_mb": _median(runs, "peak_rss_mb"),
        "peak_gpu_mb": _median(runs, "peak_gpu_mb"),
        "load_seconds": _median(runs, "load_seconds"),
        "model_seconds": _median(runs, "model_seconds"),
        "images": images,
        "failed": max(int(r.get("failed") or 0) for r in runs),
        "runs": runs,
    }


def _spec(options: BenchOptions, folder: Path, defaults: dict[str, Any], backend: str, size: int, batch: int) -> Any:
    return {
        "model": str(folder),
        "backend": backend,
        "device": options.device,
        "dtype": options.dtype,
        "batch_size": batch,
        "images": options.images,
        "steps": options.steps or defaults["steps"],
        "guidance_scale": defaults.get("guidance_scale"),
        "max_sequence_length": defaults.get("max_sequence_length"),
        "width": size,
        "height": size,
        "torch_options": options.torch_options,
    }


def _warm_up(spec: dict[str, Any], out: Path) -> float:
    """One batch, untimed, before the measurements: the first process on a machine reads the
    libraries from disk and starts the GPU (and, with --repeats 1, would always be genbatch's)."""
    side = "plain" if spec["backend"] == "torch" else "genbatch"
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        _worker({**spec, "side": side, "images": spec["batch_size"], "out": str(Path(tmp) / side)}, Path(tmp))
    return time.perf_counter() - began


def _cell(options: BenchOptions, folder: Path, defaults: dict[str, Any], backend: str, size: int, batch: int) -> Any:
    spec = _spec(options, folder, defaults, backend, size, batch)
    sides = ["genbatch", "plain"] if backend == "torch" else ["genbatch"]
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(dir=options.out) as tmp:
        work = Path(tmp)
        for repeat in range(options.repeats):
            for side in sides if repeat % 2 == 0 else sides[::-1]:
                out = work / f"{side}-{repeat}"
                runs[side].append(_worker({**spec, "side": side, "out": str(out)}, work))
    found = {side: _summary(r, options.images) for side, r in runs.items()}
    cell: dict[str, Any] = {"backend": backend, "size": size, "batch_size": batch, "steps": spec["steps"], **found}
    plain = found.get("plain")
    if plain:
        cell["ratio"] = found["genbatch"]["images_per_s"] / plain["images_per_s"]
        if plain["model_seconds"]:
            extra = found["genbatch"]["wall_seconds"] - plain["wall_seconds"]
            cell["overhead"] = extra / plain["model_seconds"]
    return cell


def run_bench(options: BenchOptions, say: Any = print) -> dict[str, Any]:
    """Measure every backend x size x batch size; write bench.json and bench.png into ``out``."""
    from genbatch.pipelines.families import read_defaults

    if options.images < 1 or options.repeats < 1 or not options.batch_sizes or min(options.batch_sizes) < 1:
        raise GenbatchError("bench: --images, --repeats and each --batch-size must be at least 1")
    from genbatch.backends.torch_backend import TorchBackend

    options.device, options.dtype = TorchBackend().resolve(options.device, options.dtype)  # both sides alike
    options.out.mkdir(parents=True, exist_ok=True)
    folder = resolve_bench_model(options.model, options.out)
    defaults = read_defaults(folder)
    sizes = options.sizes or [int(defaults.get("width") or 512)]
    warm_up = None
    if options.warm_up:
        first = _spec(options, folder, defaults, options.backends[0], sizes[0], options.batch_sizes[0])
        say(f"bench: warm-up, one batch of {first['batch_size']} (not counted)")
        warm_up = _warm_up(first, options.out)
    cells = []
    for backend in options.backends:
        for size in sizes:
            for batch in options.batch_sizes:
                say(f"bench: {backend} {size}x{size} batch {batch}, {options.images} images x {options.repeats}")
                cells.append(_cell(options, folder, defaults, backend, size, batch))
    result = {
        "model": options.model,
        "model_path": str(folder),
        "device": options.device,
        "dtype": options.dtype,
        "images": options.images,
        "repeats": options.repeats,
        "warm_up_seconds": warm_up,
        "torch_options": options.torch_options,
        "cells": cells,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
    }
    (options.out / "bench.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    from genbatch.bench.plot import plot

    plot(cells, options.out / "bench.png", title=f"{options.model}: images/s against batch size")
    say(table(cells))
    return result


def per_image(side: dict[str, Any]) -> float | None:
    """Seconds of pipeline calls per image (model time, start-up and writing left out)."""
    model, images = side.get("model_seconds"), side.get("images")
    return model / images if model and images else None


def table(cells: list[dict[str, Any]]) -> str:
    """The results as a text table, with genbatch/plain throughput ratios and model s/image."""

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    head = f"{'backend':8} {'size':>5} {'batch':>5} {'genbatch img/s':>14} {'plain img/s':>11} {'ratio':>6}"
    head += f" {'first img s':>11} {'RSS MB':>7} {'GPU MB':>7} {'overhead':>8} {'model s/img':>11} {'plain':>6}"
    lines = [head]
    for c in cells:
        ours, plain = c["genbatch"], c.get("plain") or {}
        lines.append(
            f"{c['backend']:8} {c['size']:>5} {c['batch_size']:>5} {num(ours['images_per_s'], '.2f'):>14} "
            f"{num(plain.get('images_per_s'), '.2f'):>11} {num(c.get('ratio'), '.3f'):>6} "
            f"{num(ours['first_image_seconds'], '.2f'):>11} {num(ours['peak_rss_mb'], '.0f'):>7} "
            f"{num(ours['peak_gpu_mb'], '.0f'):>7} {num(c.get('overhead'), '+.1%'):>8} "
            f"{num(per_image(ours), '.3f'):>11} {num(per_image(plain), '.3f'):>6}"
        )
    return "\n".join(lines)
