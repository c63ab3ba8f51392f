"""How fast genbatch's own machinery runs: plan, write PNGs, hash, ledger, with a stand-in
backend that returns images instantly. This is the ceiling for any backend on this machine.

    python benchmarks/pipeline_overhead.py [--images 4096] [--batch-size 256] [--size 64]

With ``--against TREE`` (a checkout of another commit, e.g. ``git worktree add /tmp/base REV``)
it runs itself in child processes on this tree and on TREE alternately, ``--pairs`` times, and
prints the median images/s and CPU seconds of each and their ratio (timed around
``run_manifest`` alone, so imports are left out; the output folder is counted, not the summary,
so older commits run too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from genbatch.backends.base import GeneratedImage, register_backend
from genbatch.runner import RunOptions, run_manifest


class InstantGenerator:
    backend, device, dtype = "instant", "cpu", "fp32"

    def describe(self) -> dict:
        return {}

    def generate(self, jobs):
        rng = np.random.default_rng(0)  # textured pixels, so PNG compression has real work
        return [GeneratedImage(j, rng.integers(0, 256, (j.height, j.width, 3), dtype=np.uint8)) for j in jobs]

    def close(self) -> None:
        pass


class InstantBackend:
    name = "instant"

    def resolve(self, device: str, dtype: str) -> tuple[str, str]:
        return "cpu", "fp32"

    def load(self, model, **kwargs) -> InstantGenerator:
        return InstantGenerator()


def run_once(images: int, batch_size: int, size: int) -> dict[str, float]:
    register_backend("instant", f"{__name__}:InstantBackend")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "m.txt"
        manifest.write_text("".join(f"a red circle on a blue background {i}\n" for i in range(images)))
        cpu, wall = time.process_time(), time.perf_counter()
        run_manifest(
            RunOptions(
                manifest=str(manifest),
                out=Path(tmp) / "out",
                model="tiny-random",
                backend="instant",
                batch_size=batch_size,
                quiet=True,
                html_report=False,
                overrides={"width": str(size), "height": str(size)},
            )
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = sum(1 for _ in (Path(tmp) / "out").glob("*.png"))
    return {"images": done, "seconds": wall, "cpu_seconds": cpu, "images_per_second": done / wall}


def compare(args: argparse.Namespace) -> None:
    trees = {"this": str(Path(__file__).resolve().parents[1]), "against": str(Path(args.against).resolve())}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    command = [sys.executable, __file__, "--json", f"--images={args.images}", f"--batch-size={args.batch_size}"]
    for _ in range(args.pairs):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": tree}
            out = subprocess.run(command + [f"--size={args.size}"], env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    for name, m in median.items():
        speed, cpu = m["images_per_second"], m["cpu_seconds"]
        print(f"{name:8s} {trees[name]}: {speed:.0f} img/s, {cpu:.2f} CPU s (median of {args.pairs})")
    ratio = median["this"]["images_per_second"] / median["against"]["images_per_second"]
    cpu_ratio = median["this"]["cpu_seconds"] / median["against"]["cpu_seconds"]
    pairs = [a["images_per_second"] / b["images_per_second"] for a, b in zip(runs["this"], runs["against"])]
    spread = f"pairs {min(pairs):.2f}-{max(pairs):.2f}"
    print(f"throughput ratio this/against {ratio:.3f} ({spread}); CPU ratio {cpu_ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--against", help="another checkout to compare with, run alternately")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.against:
        compare(args)
        return
    result = run_once(args.images, args.batch_size, args.size)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['images']} images of {args.size}x{args.size} in {result['seconds']:.2f} s: "
        f"{result['images_per_second']:.0f} img/s through plan, PNG encoding, sha256 and ledger"
    )


if __name__ == "__main__":
    main()
