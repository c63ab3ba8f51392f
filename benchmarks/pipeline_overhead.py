"""How fast genbatch's own machinery runs: plan, write PNGs, hash, ledger, with a stand-in
backend that returns images instantly. This is the ceiling for any backend on this machine.

    python benchmarks/pipeline_overhead.py [--images 4096] [--batch-size 256] [--size 64]

With ``--against TREE`` (a checkout of another commit, e.g. ``git worktree add /tmp/base REV``)
it runs itself in child processes on this tree and on TREE alternately, ``--pairs`` times, and
prints the median images/s and CPU seconds of each and their ratio (timed around
``run_manifest`` alone, so imports are left out; the output folder is counted, not the summary,
so older commits run too). With ``--plain`` the other side is the loop a user writes around
the same stand-in model (each batch, then ``Image.save`` of each PNG, on one thread).

``--accelerator-seconds S`` makes the stand-in model take S seconds per image without using
the CPU, as a GPU does, and reports the runner's overhead as a share of that model time;
``--html`` adds the end-of-run report.html and its thumbnails:

    python benchmarks/pipeline_overhead.py --images 256 --batch-size 16 --size 512 \
        --accelerator-seconds 0.2 --html --plain --pairs 3
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from genbatch.backends.base import GeneratedImage, register_backend

try:
    from genbatch import run as run_manifest
    from genbatch.plan.planner import PlanOptions
    from genbatch.runner.options import EngineOptions, InputOptions, OutputOptions, RunOptions
except ImportError:  # a tree from before the option groups (--against an older commit)
    from genbatch.runner import RunOptions as FlatRunOptions  # type: ignore[no-redef]
    from genbatch.runner import run_manifest  # type: ignore[no-redef]


@functools.cache
def textured(height: int, width: int) -> np.ndarray:
    """Random pixels, so PNG compression has real work (made once: the stand-in costs nothing)."""
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


class InstantGenerator:
    backend, device, dtype = "instant", "cpu", "fp32"
    accelerator_seconds = 0.0  # per image: time the "model" takes while leaving the CPU free

    def describe(self) -> dict:
        return {}

    def generate(self, jobs):
        time.sleep(self.accelerator_seconds * len(jobs))  # a GPU's time: the CPU is free meanwhile
        return [GeneratedImage(j, textured(j.height, j.width).copy()) for j in jobs]

    def close(self) -> None:
        pass


class InstantBackend:
    name = "instant"

    def resolve(self, device: str, dtype: str) -> tuple[str, str]:
        # with --accelerator-seconds it stands in for a GPU, and genbatch plans for one
        return ("cuda", "fp16") if InstantGenerator.accelerator_seconds else ("cpu", "fp32")

    def load(self, model, **kwargs) -> InstantGenerator:
        return InstantGenerator()


def run_once(images: int, batch_size: int, size: int, accelerator_seconds: float = 0.0, html: bool = False) -> dict:
    register_backend("instant", f"{__name__}:InstantBackend")
    InstantGenerator.accelerator_seconds = accelerator_seconds
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "m.txt"
        manifest.write_text("".join(f"a red circle on a blue background {i}\n" for i in range(images)))
        cpu, wall = time.process_time(), time.perf_counter()
        run_manifest(_options(manifest, Path(tmp) / "out", batch_size, size, html))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = sum(1 for _ in (Path(tmp) / "out").glob("*.png"))
    return _result(done, wall, cpu, accelerator_seconds * images)


def _options(manifest: Path, out: Path, batch_size: int, size: int, html: bool):
    overrides = {"width": str(size), "height": str(size)}
    if "FlatRunOptions" in globals():
        return FlatRunOptions(
            manifest=str(manifest), out=out, model="tiny-random", backend="instant", batch_size=batch_size,
            quiet=True, html_report=html, overrides=overrides,
        )  # fmt: skip
    return RunOptions(
        InputOptions(str(manifest), overrides=overrides),
        OutputOptions(out, html_report=html),
        PlanOptions(model="tiny-random", backend="instant"),
        EngineOptions(batch_size=batch_size),
        quiet=True,
    )


def plain_once(images: int, batch_size: int, size: int, accelerator_seconds: float = 0.0) -> dict:
    """The loop a user writes around the same stand-in model: a batch, then each image saved."""
    model = InstantGenerator()
    model.accelerator_seconds = accelerator_seconds
    jobs = [SimpleNamespace(width=size, height=size) for _ in range(images)]
    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, images, batch_size):
            for number, image in enumerate(model.generate(jobs[start : start + batch_size]), start):
                Image.fromarray(image.pixels).save(Path(tmp) / f"{number:06d}.png")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = sum(1 for _ in Path(tmp).glob("*.png"))
    return _result(done, wall, cpu, accelerator_seconds * images)


def _result(done: int, wall: float, cpu: float, model: float) -> dict:
    """A run's figures; the overhead is the wall time beyond the stand-in model's, as a share of it."""
    return {
        "images": done,
        "seconds": wall,
        "cpu_seconds": cpu,
        "images_per_second": done / wall,
        "model_seconds": model,
        "overhead": (wall - model) / model if model else None,
    }


def compare(args: argparse.Namespace) -> None:
    this = str(Path(__file__).resolve().parents[1])
    command = [sys.executable, __file__, "--json", f"--images={args.images}", f"--batch-size={args.batch_size}"]
    command += [f"--size={args.size}", f"--accelerator-seconds={args.accelerator_seconds}"]
    command += ["--html"] if args.html else []
    if args.plain:
        trees = {"genbatch": this, "plain": "the plain loop"}
        sides = {"genbatch": (command, this), "plain": (command + ["--plain-loop"], this)}
    else:
        trees = {"this": this, "against": str(Path(args.against).resolve())}
        sides = {name: (command, tree) for name, tree in trees.items()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for _ in range(args.pairs):
        for name, (side, tree) in sides.items():
            env = {**os.environ, "PYTHONPATH": tree}
            out = subprocess.run(side, env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = {n: {k: statistics.median(r[k] or 0 for r in rs) for k in rs[0]} for n, rs in runs.items()}
    for name, m in median.items():
        speed, cpu = m["images_per_second"], m["cpu_seconds"]
        overhead = f", overhead {m['overhead']:+.1%} of model time" if args.accelerator_seconds else ""
        print(f"{name:8s} {trees[name]}: {speed:.0f} img/s, {cpu:.2f} CPU s{overhead} (median of {args.pairs})")
    first, second = sides
    ratio = median[first]["images_per_second"] / median[second]["images_per_second"]
    cpu_ratio = median[first]["cpu_seconds"] / median[second]["cpu_seconds"]
    pairs = [a["images_per_second"] / b["images_per_second"] for a, b in zip(runs[first], runs[second])]
    spread = f"pairs {min(pairs):.2f}-{max(pairs):.2f}"
    print(f"throughput ratio {first}/{second} {ratio:.3f} ({spread}); CPU ratio {cpu_ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--accelerator-seconds",
        type=float,
        default=0.0,
        help="per image, time the stand-in model sleeps (a GPU's time, the CPU left free)",
    )
    parser.add_argument("--html", action="store_true", help="write report.html (and its thumbnails) at the end")
    parser.add_argument("--against", help="another checkout to compare with, run alternately")
    parser.add_argument("--plain", action="store_true", help="compare with the plain loop, run alternately")
    parser.add_argument("--plain-loop", action="store_true", help="run the plain loop once (a child of --plain)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.against or args.plain:
        compare(args)
        return
    if args.plain_loop:
        result = plain_once(args.images, args.batch_size, args.size, args.accelerator_seconds)
    else:
        result = run_once(args.images, args.batch_size, args.size, args.accelerator_seconds, args.html)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['images']} images of {args.size}x{args.size} in {result['seconds']:.2f} s: "
        f"{result['images_per_second']:.0f} img/s through plan, PNG encoding, sha256 and ledger"
    )
    if result["overhead"] is not None:
        print(f"model {result['model_seconds']:.2f} s; runner overhead {result['overhead']:+.1%} of model time")


if __name__ == "__main__":
    main()
