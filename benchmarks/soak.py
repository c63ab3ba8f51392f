"""Soak: a long run on the embedded model with the process's memory, open files and speed
sampled, to show they stay flat over many images.

    python benchmarks/soak.py [--images 100000] [--size 16] [--steps 1] [--batch-size 64]
    python benchmarks/soak.py --out soak-out --json bench-out/soak.json   # keep the folder
    python benchmarks/soak.py --report-only soak-out   # only `genbatch report` over it
    python benchmarks/soak.py --stand-in --size 64     # genbatch's own machinery, no model

Two phases, each a process sampled every few seconds: ``genbatch run`` (generation, then
the end-of-run reports it writes itself: run.json, report.csv/.parquet, metadata.jsonl,
report.html with its thumbnails), then ``genbatch report OUT`` over the finished folder.
Prints start / peak / end RSS, open files, and images/s over the first and the last tenth
of the run; writes the samples to bench-out/soak.json (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


class LineCounter:
    """Lines of a growing file, counted from where the last call stopped."""

    def __init__(self, path: Path):
        self.path, self.offset, self.lines = path, 0, 0

    def __call__(self) -> int:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    self.lines += chunk.count(b"\n")
                    self.offset += len(chunk)
        except OSError:
            pass
        return self.lines


def sampled(command: list[str], every: float, images: Callable[[], int]) -> tuple[int, float, list[dict]]:
    """Run ``command``, sampling its RSS and open files; (exit code, wall seconds, samples)."""
    began = time.monotonic()
    process = subprocess.Popen(command)
    samples = []
    while process.poll() is None:
        samples.append(
            {
                "t": round(time.monotonic() - began, 2),
                "images": images(),
                "rss_mb": rss_mb(process.pid),
                "open_files": open_files(process.pid),
            }
        )
        time.sleep(every)
    return process.returncode, time.monotonic() - began, samples


def report_step(out: Path, every: float) -> dict:
    """``genbatch report OUT`` (tables, metadata.jsonl, report.html and thumbnails), sampled."""
    code, wall, samples = sampled([sys.executable, "-m", "genbatch", "report", str(out)], every, lambda: 0)
    rss = [s["rss_mb"] for s in samples if s["rss_mb"] and s["t"] >= 1]
    pages, html = out / ".genbatch-report", out / "report.html"
    return {
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "rss_mb": {"start": rss[0] if rss else None, "peak": max(rss, default=None), "end": rss[-1] if rss else None},
        "report_html_mb": round(html.stat().st_size / 1e6, 2) if html.exists() else None,
        "page_files": len(list(pages.iterdir())) if pages.is_dir() else 0,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--stand-in",
        action="store_true",
        help="a backend that returns textured images instantly: genbatch's own machinery alone, at its full rate",
    )
    parser.add_argument("--out", type=Path, help="the output folder, kept (default: a temp folder, removed)")
    parser.add_argument("--report-only", type=Path, metavar="OUT", help="only the report step, over OUT")
    parser.add_argument("--json", type=Path, default=Path("bench-out/soak.json"), help="where to write the samples")
    args = parser.parse_args()
    if args.report_only:
        result = {"report_step": report_step(args.report_only, args.every)}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or Path(tmp) / "out"
            result = soak(args, Path(tmp) / "soak.txt", out)
            result["report_step"] = report_step(out, args.every)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(_without_samples(result), indent=2))


def _without_samples(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_samples(v) for k, v in value.items() if k != "samples"}
    return value


_STAND_IN = (
    "from pipeline_overhead import register_backend; "
    "register_backend('instant', 'pipeline_overhead:InstantBackend'); "
    "from genbatch.cli.app import app; sys.argv[0] = 'genbatch'; app()"
)


def soak(args: argparse.Namespace, manifest: Path, out: Path) -> dict:
    """The ``genbatch run`` phase: generation and the run's own end-of-run reports."""
    manifest.write_text("".join(f"a small red circle on a blue background {i}\n" for i in range(args.images)))
    # --stand-in: the run's own machinery alone (plan, writer, ledger, sink, reports), with the
    # instant backend of pipeline_overhead.py registered in the child before the CLI starts
    stand_in = (
        ["-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); {_STAND_IN}", "run"]
        if args.stand_in
        else ["-m", "genbatch", "run"]
    )
    command = [
        sys.executable,
        *stand_in,
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
        *(["--backend", "instant", "--model", "tiny-random"] if args.stand_in else []),
    ]
    code, wall, samples = sampled(command, args.every, LineCounter(out / "genbatch.jsonl"))
    generating = [s for s in samples if s["rss_mb"] and s["images"] and s["images"] < args.images]
    reporting = [s for s in samples if s["rss_mb"] and s["images"] >= args.images]
    tenth = max(1, args.images // 10)

    def rate(lo: int, hi: int) -> float | None:
        inside = [s for s in samples if s["images"] and lo <= s["images"] <= hi]
        reached = next((i for i, s in enumerate(inside) if s["images"] >= hi), None)
        inside = inside if reached is None else inside[: reached + 1]  # not the end-of-run samples
        if len(inside) < 2 or inside[-1]["t"] == inside[0]["t"]:
            return None
        return (inside[-1]["images"] - inside[0]["images"]) / (inside[-1]["t"] - inside[0]["t"])

    def third(part: int) -> list[float]:
        lo, hi = part * args.images // 3, (part + 1) * args.images // 3
        return [s["rss_mb"] for s in generating if lo <= s["images"] < hi]

    return {
        "images": args.images,
        "size": args.size,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "backend": "instant (stand-in)" if args.stand_in else "torch",
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "end_of_run_reports_seconds": round(reporting[-1]["t"] - reporting[0]["t"], 1) if reporting else None,
        "rss_mb": {
            "start": generating[0]["rss_mb"] if generating else None,
            "peak_generating": max((s["rss_mb"] for s in generating), default=None),
            "end_of_generation": generating[-1]["rss_mb"] if generating else None,
            "median_by_third": [sorted(r)[len(r) // 2] if r else None for r in map(third, range(3))],
            "peak_end_of_run_reports": max((s["rss_mb"] for s in reporting), default=None),
            "peak": max((s["rss_mb"] for s in samples if s["rss_mb"]), default=None),
        },
        "open_files": {"max": max((s["open_files"] for s in samples if s["open_files"]), default=None)},
        "images_per_second": {"first_tenth": rate(0, tenth), "last_tenth": rate(args.images - tenth, args.images)},
        "samples": samples,
    }


if __name__ == "__main__":
    main()
