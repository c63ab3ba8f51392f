"""--engine local vs --engine ray on one machine, and Ray's start-up time.

    python benchmarks/ray_vs_local.py [--images 512] [--repeats 3] [--workers 2] [--batch-size 8] [--steps N]

Each repeat runs ``genbatch run`` as a user would, alternating the engines, into a fresh
folder, with the embedded model (``shapes``) at its defaults; the figure is images/s from
run.json (done / wall, so model load and, for Ray, starting a local Ray instance and its
workers are included). The start-up is timed apart: ``ray.init()`` on a fresh local instance
until N workers have imported genbatch and torch and answered. Medians of the repeats.

Ray runs its workers at nice 15; on a machine shared with other work that starves them, so
this script runs them at nice 0 (``RAY_worker_niceness=0``), as the local engine runs. Every Ray
instance here is on 127.0.0.1 only: genbatch starts its own so, and the start-up measurement's
``ray.init()`` with Ray's switch for machines that are no cluster nodes
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), without which it listens on the network.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, RAY_worker_niceness="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")


def manifest(folder: Path, images: int) -> Path:
    with open(ROOT / "manifests" / "example.csv", newline="") as handle:
        prompts = [row["prompt"] for row in csv.DictReader(handle)]
    path = folder / "prompts.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt"])
        for i in range(images):
            writer.writerow([f"p{i}", prompts[i % len(prompts)]])
    return path


def run(engine: str, prompts: Path, out: Path, workers: int, batch_size: int, steps: int | None) -> dict:
    extra = ["--engine", "ray", "--ray-workers", str(workers)] if engine == "ray" else []
    extra += ["--steps", str(steps)] if steps else []
    command = [
        sys.executable,
        "-m",
        "genbatch.cli.app",
        "run",
        str(prompts),
        "--out",
        str(out),
        "--quiet",
        "--batch-size",
        str(batch_size),
        "--json",
        *extra,
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, env=ENV)
    summary = json.loads(result.stdout)
    return {
        "images_per_second": summary["images_per_second"],
        "wall": summary["wall_seconds"],
        "generation": summary["generation_seconds"],
    }


STARTUP = """
import time, sys
began = time.monotonic()
import ray
ray.init(include_dashboard=False, log_to_driver=False, logging_level="error")
@ray.remote(num_cpus=1)
class Worker:
    def ready(self):
        import genbatch.backends.torch_backend, torch
        return True
workers = [Worker.remote() for _ in range({workers})]
ray.get([w.ready.remote() for w in workers])
print(time.monotonic() - began)
ray.shutdown()
"""


def startup(workers: int) -> float:
    result = subprocess.run(
        [sys.executable, "-c", STARTUP.format(workers=workers)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="default: the model's own (10 for shapes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prompts = manifest(folder, args.images)
        figures: dict[str, list[dict]] = {"local": [], "ray": []}
        starts: list[float] = []
        for repeat in range(args.repeats):
            for engine in ("local", "ray") if repeat % 2 == 0 else ("ray", "local"):
                figures[engine].append(
                    run(engine, prompts, folder / f"{engine}-{repeat}", args.workers, args.batch_size, args.steps)
                )
                print(engine, figures[engine][-1], flush=True)
            starts.append(startup(args.workers))
            print("startup", round(starts[-1], 2), flush=True)
        for engine, runs in figures.items():
            rates = [r["images_per_second"] for r in runs]
            wall = statistics.median(r["wall"] for r in runs)
            print(
                f"{engine}: median {statistics.median(rates):.2f} img/s over {args.images} images "
                f"(runs: {', '.join(f'{r:.2f}' for r in rates)}; wall {wall:.1f}s)"
            )
        print(
            f"ray start-up ({args.workers} workers ready): median {statistics.median(starts):.1f}s "
            f"(runs: {', '.join(f'{s:.1f}' for s in starts)})"
        )


if __name__ == "__main__":
    main()
