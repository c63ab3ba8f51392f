"""Million-row manifests: `genbatch validate` and `genbatch run --dry-run` (plan and resume
scan) of a large CSV into an output folder that already holds finished images.

    python benchmarks/million_rows.py [--rows 1000000] [--done 100000] [--repeats 3] [--quoted] [--images N]

Generates ``manifest.csv`` (prompt, seed and a few optional columns; ``--quoted``: one row in
ten holds a quoted prompt with a comma, which takes the exact reader) and an output folder
whose first ``--done`` jobs are finished: a small image each, recorded in the ledger by the
real ResultSink from the real plan, so the keys and file names are the ones a run gives.
Then times each command as a subprocess (wall time, and peak RSS from ``wait4``), the median
of ``--repeats`` alternating runs, and writes benchmarks/results/million-rows.json.

``--images N``: the same rows again as rows with images (an ``image`` column naming one of N
small input pictures, and a strength), validated and planned (into an empty folder) alternating
with the text rows: what reading, hashing and checking inputs adds per row
(results/million-image-rows.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
THINGS = ["circle", "square", "triangle", "star", "cat", "house", "tree", "boat", "car", "bird"]


def write_manifest(path: Path, rows: int, quoted: bool) -> None:
    """``rows`` rows of prompt,seed,steps,guidance_scale,style; one seed in ten left empty
    (derived from the prompt), one steps value in four given."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("prompt,seed,steps,guidance_scale,style\n")
        lines = []
        for i in range(rows):
            prompt = f"a {COLOURS[i % 8]} {THINGS[(i // 8) % 10]} on a plain background number {i}"
            if quoted and i % 10 == 3:
                prompt = f'"{prompt}, ""quoted"" and with a comma"'
            seed = "" if i % 10 == 7 else str(i * 7919 % 1_000_003)
            steps = str(2 + i % 3) if i % 4 == 0 else ""
            lines.append(f"{prompt},{seed},{steps},{7.5 if i % 5 == 0 else ''},style{i % 13}\n")
            if len(lines) == 10_000:
                handle.write("".join(lines))
                lines.clear()
        handle.write("".join(lines))


def write_image_manifest(manifest: Path, path: Path, images: int) -> None:
    """``manifest``'s rows with an image (one of ``images`` 64x64 pictures beside it, in turn)
    and a strength, for the embedded model's image-to-image."""
    from PIL import Image, ImageDraw

    folder = path.parent / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(images):
        picture = Image.new("RGB", (64, 64), (40 + 13 * n % 200, 90, 160))
        ImageDraw.Draw(picture).ellipse([8 + n % 16, 8, 40 + n % 16, 48], fill=(230, 200 - 7 * n % 150, 40))
        picture.save(folder / f"in{n}.png")
    with open(manifest, encoding="utf-8", newline="") as source, open(path, "w", encoding="utf-8", newline="") as dest:
        dest.write(source.readline().rstrip("\n") + ",image,strength\n")
        for number, line in enumerate(source):
            dest.write(f"{line.rstrip(chr(10))},inputs/in{number % images}.png,0.6\n")


def write_done_folder(manifest: Path, out: Path, done: int, work: Path) -> None:
    """The first ``done`` jobs of ``manifest`` finished in ``out``: planned by genbatch itself
    (from a manifest of the first rows, which gives the same keys and names), each with a
    small image file and a ledger record written by the real ResultSink."""
    sys.path.insert(0, str(ROOT))
    from genbatch.engine.sink import BatchFacts, ResultSink
    from genbatch.engine.writer import WrittenImage
    from genbatch.plan.planner import make_plan
    from genbatch.progress import Progress
    from genbatch.runner.options import InputOptions, OutputOptions, RunOptions
    from genbatch.runner.run import load_manifest
    from genbatch.store.ledger import Ledger

    head = work / "head.csv"
    with open(manifest, encoding="utf-8", newline="") as source, open(head, "w", encoding="utf-8", newline="") as dest:
        for number, line in enumerate(source):
            if number > done:
                break
            dest.write(line)
    options = RunOptions(InputOptions(str(head)), OutputOptions(out), dry_run=True, quiet=True)
    plan = make_plan(load_manifest(options), options.plan)
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out)
    sink = ResultSink(ledger, Progress(0, quiet=True), run_id="bench", manifest=str(manifest), dtype=plan.dtype)
    facts = BatchFacts(batch_size=8, seconds=0.01, device=plan.device)
    payload = b"\x89PNG\r\n\x1a\n" + b"\0" * 64  # the resume scan checks the size, not the pixels
    digest = hashlib.sha256(payload).hexdigest()
    for job in plan.jobs[:done]:
        path = out / job.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        sink.done(job, facts, WrittenImage(job.file, len(payload), digest))
    ledger.close()


def timed(command: list[str]) -> dict[str, float | int]:
    """Wall seconds and peak RSS (MiB) of one run of ``command``, with its exit code."""
    began = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
    if process.returncode != 0:
        print(stderr[-2000:], file=sys.stderr)
    return {
        "seconds": round(wall, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit": process.returncode,
    }


def summarise(runs: list[dict[str, float | int]]) -> dict[str, object]:
    """Medians over the runs that succeeded; every run is kept in ``runs`` with its exit code."""
    ok = [r for r in runs if r["exit"] == 0] or runs
    return {
        "failed_runs": len(runs) - len(ok) if ok is not runs else sum(r["exit"] != 0 for r in runs),
        "median_seconds": statistics.median(r["seconds"] for r in ok),
        "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in ok),
        "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in ok),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--done", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quoted", action="store_true", help="one row in ten with a quoted prompt (exact reader)")
    parser.add_argument("--images", type=int, default=0, help="also the rows with images, N input pictures")
    parser.add_argument("--work", type=Path, help="keep the generated files here (reused if present)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = ROOT / "benchmarks" / "results"
    args.output = args.output or results / ("million-image-rows.json" if args.images else "million-rows.json")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        manifest, out = work / "manifest.csv", work / "out"
        began = time.monotonic()
        if not manifest.exists():
            write_manifest(manifest, args.rows, args.quoted)
        if not out.exists():
            write_done_folder(manifest, out, args.done, work)
        with_images = work / "manifest-images.csv"
        if args.images and not with_images.exists():
            write_image_manifest(manifest, with_images, args.images)
        generated = time.monotonic() - began
        python = [sys.executable, "-m", "genbatch"]
        commands = {
            "validate": [*python, "validate", str(manifest)],
            "dry_run": [*python, "run", str(manifest), "--out", str(out), "--dry-run"],
        }
        if args.images:  # into a folder of their own: their keys hold each input's sha256
            commands["validate_images"] = [*python, "validate", str(with_images)]
            commands["dry_run_images"] = [
                *python,
                "run",
                str(with_images),
                "--out",
                str(work / "out-images"),
                "--dry-run",
            ]
        runs: dict[str, list[dict[str, float | int]]] = {name: [] for name in commands}
        for _ in range(args.repeats):  # alternating, so load on the machine hits both alike
            for name, command in commands.items():
                runs[name].append(timed(command))
                print(name, runs[name][-1], flush=True)
        result = {
            "rows": args.rows,
            "done": args.done,
            "quoted": args.quoted,
            "images": args.images,
            "manifest_mib": round(manifest.stat().st_size / 2**20, 1),
            "ledger_mib": round((out / "genbatch.jsonl").stat().st_size / 2**20, 1),
            "generate_seconds": round(generated, 1),
            "cpus": os.cpu_count(),
            **{name: summarise(r) for name, r in runs.items()},
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in commands}, indent=2))
    for name in commands:
        print(name, {k: v for k, v in result[name].items() if k != "runs"})


if __name__ == "__main__":
    main()
