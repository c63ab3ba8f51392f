"""Soak: a long run on the embedded model with the process's memory, open files and speed
sampled, to show they stay flat over many images.

    python benchmarks/soak.py [--images 100000] [--size 16] [--steps 1] [--batch-size 64]

Prints start / peak / end RSS, open files, and images/s over the first and the last tenth
of the run; writes the samples to bench-out/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def open_files(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def ledger_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "soak.txt"
        manifest.write_text("".join(f"a small red circle on a blue background {i}\n" for i in range(args.images)))
        out = Path(tmp) / "out"
        command = [
            sys.executable,
            "-m",
            "genbatch.cli",
            "run",
            str(manifest),
            "--out",
            str(out),
            "--quiet",
            "--steps",
            str(args.steps),
            "--width",
            str(args.size),
            "--height",
            str(args.size),
            "--batch-size",
            str(args.batch_size),
            "--name-template",
            "{bucket:04d}/{index:07d}.png",
        ]
        began = time.monotonic()
        process = subprocess.Popen(command)
        samples = []
        while process.poll() is None:
            samples.append(
                {
                    "t": round(time.monotonic() - began, 2),
                    "images": ledger_lines(out / "genbatch.jsonl"),
                    "rss_mb": rss_mb(process.pid),
                    "open_files": open_files(process.pid),
                }
            )
            time.sleep(args.every)
        wall = time.monotonic() - began
    generating = [s for s in samples if s["rss_mb"] and s["images"]]
    tenth = max(1, args.images // 10)

    def rate(lo: int, hi: int) -> float | None:
        inside = [s for s in generating if lo <= s["images"] <= hi]
        if len(inside) < 2 or inside[-1]["t"] == inside[0]["t"]:
            return None
        return (inside[-1]["images"] - inside[0]["images"]) / (inside[-1]["t"] - inside[0]["t"])

    result = {
        "images": args.images,
        "size": args.size,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "exit_code": process.returncode,
        "wall_seconds": round(wall, 1),
        "rss_mb": {
            "start": generating[0]["rss_mb"] if generating else None,
            "peak": max((s["rss_mb"] for s in samples if s["rss_mb"]), default=None),
            "end_of_generation": generating[-1]["rss_mb"] if generating else None,
        },
        "open_files": {"max": max((s["open_files"] for s in samples if s["open_files"]), default=None)},
        "images_per_second": {"first_tenth": rate(0, tenth), "last_tenth": rate(args.images - tenth, args.images)},
        "samples": samples,
    }
    Path("bench-out").mkdir(exist_ok=True)
    Path("bench-out/soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
