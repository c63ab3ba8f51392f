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
``flux-schnell``, ``flux-dev``: the released architecture with random weights, built on the
device (:mod:`genbatch.pipelines.architectures`).

The speed options (``cache``, ``cache_threshold``, ``quantize``, ``speed``, and the torch options
``compile``, ``attention``, ``channels_last``) are checked as ``genbatch run`` checks them
(genbatch.pipelines.speed) before any process starts. ``vs`` says what genbatch is measured
against: ``plain``, the plain loop with the same options applied by hand as a diffusers user
applies them (``enable_cache``, torchao's ``quantize_``, ``compile_repeated_blocks``...), so that
any gain over it is genbatch's own; ``exact``, the plain loop without them, so that the gain is
the options'; both; or ``none`` (genbatch alone).
"""

from __future__ import annotations

import json
import os
import shutil
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
    keep_images: bool = False  # each side's images of the last repeat, kept in OUT/images/<cell>/<side>
    cache: str | None = None  # --cache (None: off); the threshold: cache_threshold, else the cache's own
    cache_threshold: float | None = None
    quantize: str | None = None  # --quantize (None: off)
    speed: str = "exact"  # "fast": genbatch.pipelines.speed.fast_settings for what the options leave unset
    vs: list[str] = field(default_factory=lambda: ["plain"])  # VS: what genbatch is measured against


# What genbatch is measured against: the plain loop with the speed options applied by hand, the
# plain loop without them, or nothing.
VS = ("plain", "exact", "none")
# The speed options a plain loop applies by hand under --vs plain (genbatch's reuse_embeddings is
# genbatch's own and has no diffusers equivalent).
SPEED_OPTIONS = ("cache", "cache_threshold", "quantize", "compile", "compile_backend", "attention", "channels_last")


def resolve_bench_model(model: str, work: Path) -> Path:
    """A model folder: the folder or built-in name as ``genbatch run`` takes it, or a released
    architecture (sd15, sdxl, flux-schnell) written config-only into ``work``."""
    from genbatch.pipelines.architectures import names, write_architecture
    from genbatch.pipelines.model_lookup import resolve_model

    if model in names():
        return write_architecture(model, work / f"{model}-random")
    return resolve_model(model).path


def by_hand(options: BenchOptions) -> dict[str, Any]:
    """The speed options of a bench, as the plain loop applies them by hand under ``--vs plain``
    (genbatch.bench.worker.apply_by_hand); {} where none is set."""
    torch = options.torch_options
    found: dict[str, Any] = {}
    if options.cache:
        found.update(cache=options.cache, cache_threshold=options.cache_threshold)
    if options.quantize:
        found["quantize"] = options.quantize
    if torch.get("compile"):
        found.update(compile=torch["compile"], compile_backend=torch.get("compile_backend") or "inductor")
    if torch.get("attention") not in (None, "sdpa"):
        found["attention"] = torch["attention"]
    if torch.get("channels_last") == "on":
        found["channels_last"] = "on"
    return found


def check_speed(options: BenchOptions, folder: Path) -> list[str]:
    """``options`` with ``--speed fast`` resolved and the cache's threshold filled in, checked as
    ``genbatch run`` checks them (genbatch.pipelines.speed), before any process starts: raises a
    GenbatchError naming the option. Returns what ``--speed fast`` left off, to say."""
    from genbatch.pipelines import speed
    from genbatch.pipelines.model_lookup import resolve_model

    vs = list(dict.fromkeys(options.vs))
    if not vs or any(v not in VS for v in vs) or ("none" in vs and len(vs) > 1):
        named = ", ".join(repr(v) for v in options.vs) or "nothing"
        raise GenbatchError(f"--vs {named}: expected plain, exact or both (--vs plain --vs exact), or none alone")
    options.vs = vs
    if options.speed not in speed.SPEEDS:
        raise GenbatchError(f"--speed {options.speed!r}: expected {' or '.join(speed.SPEEDS)}")
    if options.cache is not None and options.cache not in speed.CACHES:
        raise GenbatchError(f"--cache {options.cache!r}: expected {', '.join(speed.CACHES)} or none")
    if options.quantize is not None and options.quantize not in speed.QUANTIZATIONS:
        raise GenbatchError(f"--quantize {options.quantize!r}: expected {', '.join(speed.QUANTIZATIONS)} or none")
    left_off: list[str] = []
    if options.speed == "fast" and "torch" in options.backends:  # what the options leave unset, as run does
        settings, skipped = speed.fast_settings([folder], options.device, options.dtype)
        left_off = [f"--speed fast: {reason}" for reason in skipped]
        if options.cache is None and "cache" in settings:
            options.cache, options.cache_threshold = settings["cache"], settings.get("cache_threshold")
        options.quantize = options.quantize or settings.get("quantize")
        if "compile" in settings and not options.torch_options.get("compile"):
            options.torch_options = {**options.torch_options, "compile": settings["compile"]}
    if options.cache is None:
        options.cache_threshold = None  # as genbatch run: a threshold without a cache is none
    given = by_hand(options)
    if (options.cache or options.quantize) and options.backends != ["torch"]:
        raise GenbatchError("--cache and --quantize are options of the torch backend: bench them with --backend torch")
    if "exact" in vs and not given:
        raise GenbatchError(
            "--vs exact measures the plain loop without the speed options (--cache, --quantize, --compile, "
            "--attention, --channels-last on, --speed fast), and none is set, so the plain loop is already exact; "
            "use --vs plain"
        )
    if options.cache:
        why = speed.cache_problem(folder, options.cache)
        if why:
            raise GenbatchError(f"--cache: {why}")
        if options.cache_threshold is not None and options.cache not in speed.CACHE_THRESHOLDS:
            taking = " and ".join(speed.CACHE_THRESHOLDS)
            raise GenbatchError(f"--cache-threshold: --cache {options.cache} takes no threshold ({taking} do)")
        if options.cache_threshold is None:  # both sides run the one genbatch records
            options.cache_threshold = speed.CACHE_THRESHOLDS.get(options.cache)
    if "torch" in options.backends:
        why = speed.run_problem(
            [resolve_model(str(folder))],
            options.device,
            options.dtype,
            quantize=options.quantize,
            compile=options.torch_options.get("compile"),
            attention=options.torch_options.get("attention") or "sdpa",
        )
        if why:
            raise GenbatchError(why)
    return left_off


def sides(options: BenchOptions, backend: str) -> list[str]:
    """The measurements of one cell: genbatch's, then the plain loops ``--vs`` names (torch only)."""
    return ["genbatch"] + ([v for v in options.vs if v != "none"] if backend == "torch" else [])


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


def _summary(runs: list[dict[str, Any]], images: int, steps: int) -> dict[str, Any]:
    wall = _median(runs, "wall_seconds") or float("nan")
    model = _median(runs, "model_seconds")
    return {
        "images_per_s": images / wall,
        "s_per_image": wall / images,
        "wall_seconds": wall,
        "first_image_seconds": _median(runs, "first_image_seconds"),
        "peak_rss_mb": _median(runs, "peak_rss_mb"),
        "peak_gpu_mb": _median(runs, "peak_gpu_mb"),  # torch.cuda.max_memory_allocated over the process
        "peak_gpu_load_mb": _median(runs, "peak_gpu_load_mb"),  # ... while the model loaded
        "peak_gpu_generate_mb": _median(runs, "peak_gpu_generate_mb"),  # ... after it loaded
        "load_seconds": _median(runs, "load_seconds"),
        "model_seconds": model,
        "s_per_step": model / images / steps if model else None,  # pipeline calls; encoders and VAE included
        "images": images,
        "failed": max(int(r.get("failed") or 0) for r in runs),
        "applied": runs[-1].get("applied"),  # the speed options in effect, as the side recorded them
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
        "cache": options.cache,
        "cache_threshold": options.cache_threshold,
        "quantize": options.quantize,
    }


def _side_spec(spec: dict[str, Any], options: BenchOptions, side: str) -> dict[str, Any]:
    """A side's own spec: the plain loop's speed options by hand (none for ``exact``)."""
    if side == "genbatch":
        return {**spec, "side": side}
    return {**spec, "side": side, "by_hand": by_hand(options) if side == "plain" else {}}


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
    measured = sides(options, backend)
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in measured}
    with tempfile.TemporaryDirectory(dir=options.out) as tmp:
        work = Path(tmp)
        for repeat in range(options.repeats):
            for side in measured if repeat % 2 == 0 else measured[::-1]:
                out = work / f"{side}-{repeat}"
                runs[side].append(_worker({**_side_spec(spec, options, side), "out": str(out)}, work))
        if options.keep_images:
            kept = options.out / "images" / f"{backend}-{size}-b{batch}"
            for side in measured:
                shutil.rmtree(kept / side, ignore_errors=True)
                kept.mkdir(parents=True, exist_ok=True)
                shutil.move(work / f"{side}-{options.repeats - 1}", kept / side)
    found = {side: _summary(r, options.images, spec["steps"]) for side, r in runs.items()}
    cell: dict[str, Any] = {"backend": backend, "size": size, "batch_size": batch, "steps": spec["steps"], **found}
    plain, exact = found.get("plain"), found.get("exact")
    if plain:  # genbatch against the same options by hand: above 1 only where genbatch adds something
        cell["ratio"] = found["genbatch"]["images_per_s"] / plain["images_per_s"]
        if plain["model_seconds"]:
            extra = found["genbatch"]["wall_seconds"] - plain["wall_seconds"]
            cell["overhead"] = extra / plain["model_seconds"]
    if exact:  # genbatch with the options against the plain loop without them: the options' gain
        cell["gain"] = found["genbatch"]["images_per_s"] / exact["images_per_s"]
        if exact["model_seconds"] and found["genbatch"]["model_seconds"]:
            cell["model_gain"] = exact["model_seconds"] / found["genbatch"]["model_seconds"]
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
    for note in check_speed(options, folder):  # before any process starts
        say(f"bench: {note}")
    defaults = read_defaults(folder)
    sizes = options.sizes or [int(defaults.get("width") or 512)]
    warm_up = None
    if options.warm_up:
        first = _spec(options, folder, defaults, options.backends[0], sizes[0], options.batch_sizes[0])
        first["by_hand"] = by_hand(options)  # a compile fills torch's compile cache for both sides alike
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
        "speed_options": by_hand(options),  # what genbatch ran with, and the plain loop by hand under --vs plain
        "vs": options.vs,
        "cells": cells,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
    }
    (options.out / "bench.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    from genbatch.bench.plot import plot

    speed = ", ".join(f"{k} {v}" for k, v in by_hand(options).items() if k != "compile_backend")
    title = f"{options.model}: images/s against batch size" + (f" ({speed})" if speed else "")
    plot(cells, options.out / "bench.png", title=title)
    say(table(cells))
    return result


def per_image(side: dict[str, Any]) -> float | None:
    """Seconds of pipeline calls per image (model time, start-up and writing left out)."""
    model, images = side.get("model_seconds"), side.get("images")
    return model / images if model and images else None


def table(cells: list[dict[str, Any]]) -> str:
    """The results as a text table: images/s of each side, genbatch/plain (``ratio``) and
    genbatch/exact (``gain``), and each side's model s/image; the plain and exact columns where
    they were measured."""

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    measured = [side for side in ("plain", "exact") if any(c.get(side) for c in cells)]
    head = f"{'backend':8} {'size':>5} {'batch':>5} {'genbatch img/s':>14}"
    head += "".join(f" {side + ' img/s':>11} {('ratio' if side == 'plain' else 'gain'):>6}" for side in measured)
    head += f" {'first img s':>11} {'RSS MB':>7} {'GPU MB':>7} {'gen GPU MB':>10}"
    head += f" {'overhead':>8}" if "plain" in measured else ""
    head += f" {'model s/img':>11} {'ms/step':>7}" + "".join(f" {side:>6}" for side in measured)
    lines = [head]
    for c in cells:
        ours = c["genbatch"]
        line = f"{c['backend']:8} {c['size']:>5} {c['batch_size']:>5} {num(ours['images_per_s'], '.2f'):>14}"
        for side in measured:
            other = c.get(side) or {}
            rate = c.get("ratio" if side == "plain" else "gain")
            line += f" {num(other.get('images_per_s'), '.2f'):>11} {num(rate, '.3f'):>6}"
        line += (
            f" {num(ours['first_image_seconds'], '.2f'):>11} {num(ours['peak_rss_mb'], '.0f'):>7} "
            f"{num(ours['peak_gpu_mb'], '.0f'):>7} {num(ours.get('peak_gpu_generate_mb'), '.0f'):>10}"
        )
        line += f" {num(c.get('overhead'), '+.1%'):>8}" if "plain" in measured else ""
        step = ours.get("s_per_step")
        line += f" {num(per_image(ours), '.3f'):>11} {num(step * 1000 if step else None, '.1f'):>7}"
        line += "".join(f" {num(per_image(c.get(side) or {}), '.3f'):>6}" for side in measured)
        lines.append(line)
    return "\n".join(lines)
