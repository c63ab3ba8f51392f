"""How long does ``write_html_report`` take on a big output folder, and how much memory?

    python benchmarks/report_bench.py                 # 100,000 ledger records, no thumbnails
    python benchmarks/report_bench.py --n 20000 --thumbs
    python benchmarks/report_bench.py --n 1000000 --no-files --folder big-out   # images missing
    python benchmarks/report_bench.py --folder big-out --reuse --src ../other-checkout
    python benchmarks/report_bench.py --demo demo-out --n 50   # a folder to look at

The folder is fake: a ledger written here (the real record format), with empty files
standing in for the images (real little PNGs with ``--images``, which ``--thumbs`` and
``--demo`` imply; none with ``--no-files``, so every done record is a missing file). A few
percent of the jobs are failed and a few rows skipped, as in a real run. The report is
written by a child process (``--src``: the checkout whose genbatch it imports), whose
wall time and peak RSS are printed.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SUBJECTS = [
    "a red fox",
    "a lighthouse",
    "an astronaut",
    "a bowl of ramen",
    "a vintage car",
    "a snowy mountain",
    "a cyberpunk street",
    "a watercolor owl",
    "a glass teapot",
    "a koi pond",
    "a desert caravan",
    "a robot gardener",
]
STYLES = [
    "at golden hour",
    "in the style of ukiyo-e",
    "studio lighting, 85mm",
    "oil painting",
    "isometric, low poly",
    "foggy morning",
    "neon night",
    "macro photo",
]


def make_fake_out(out: Path, n: int, *, images: bool, files: bool = True, seed: int = 0) -> None:
    """Write a ledger of ``n`` jobs (and their image files, 1,000 a sub-folder) into ``out``."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc)
    clock = started
    ledger = open(out / "genbatch.jsonl", "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    for index in range(n):
        prompt = f"{rng.choice(SUBJECTS)}, {rng.choice(STYLES)}"
        seed_value = rng.randrange(1, 10_000)
        seconds = rng.uniform(0.6, 1.4) * (2.5 if 0.4 < index / max(n, 1) < 0.5 else 1.0)
        clock += timedelta(seconds=seconds)
        status = "failed" if rng.random() < 0.03 else "skipped" if rng.random() < 0.02 else "done"
        slug = prompt[:24].replace(" ", "-").replace(",", "")
        file = f"{index // 1000:04d}/{index + 1:07d}-{slug}-{seed_value}.png"
        record = {
            "status": status,
            "key": f"{index:020x}",
            "file": file if status == "done" else None,
            "index": index,
            "row": index,
            "line": index + 2,
            "manifest": "prompts.csv",
            "k": 0,
            "id": f"p{index:05d}",
            "prompt": prompt,
            "negative_prompt": "blurry" if index % 3 else "",
            "seed": seed_value,
            "steps": 20,
            "guidance_scale": 7.5,
            "width": 512,
            "height": 512,
            "scheduler": "euler",
            "model": "sd-turbo",
            "model_path": "/models/sd-turbo",
            "model_fingerprint": "abc123",
            "backend": "torch",
            "device": "cuda:0",
            "dtype": "float16",
            "batch_size": 1,
            "seconds": round(seconds, 3),
            "finished_at": clock.isoformat(),
            "sha256": None,
            "fields": {"prompt": prompt},
            "error": None,
            "run_id": "20261122T200000-demo",
        }
        if status == "failed":
            record["error"] = rng.choice(
                ["NaN in decoded image (black output)", "CUDA out of memory. Tried to allocate 2.00 GiB"]
            )
        if status == "skipped":
            record.update(
                {
                    "key": f"skipped-{index:014x}",
                    "seed": None,
                    "steps": None,
                    "seconds": None,
                    "error": "row 7: steps must be a positive integer, got 'many'",
                }
            )
        if status == "done" and files:
            (out / file).parent.mkdir(exist_ok=True)
            if images:
                _write_image(out / file, index, rng)
            else:
                (out / file).touch()
        ledger.write(json.dumps(record) + "\n")
    ledger.close()


def _write_image(path: Path, index: int, rng: random.Random) -> None:
    from PIL import Image, ImageDraw

    hue = (index * 0.137) % 1.0
    top = tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.55, 0.95))
    bottom = tuple(int(c * 255) for c in colorsys.hsv_to_rgb((hue + 0.3) % 1.0, 0.8, 0.45))
    im = Image.new("RGB", (512, 512))
    draw = ImageDraw.Draw(im)
    for y in range(0, 512, 4):
        t = y / 511
        draw.rectangle([0, y, 511, y + 3], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(3):
        x, y, r = rng.randrange(60, 450), rng.randrange(60, 450), rng.randrange(30, 110)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(255 - c for c in top))
    im.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="ledger records (default 100,000)")
    parser.add_argument("--thumbs", action="store_true", help="also make thumbnails (implies --images)")
    parser.add_argument("--images", action="store_true", help="write real PNGs, not empty files")
    parser.add_argument("--no-files", action="store_true", help="no image files: every done record is missing")
    parser.add_argument("--demo", type=Path, help="write the folder here and keep it")
    parser.add_argument("--folder", type=Path, help="write the folder here and keep it (no demo images)")
    parser.add_argument("--reuse", action="store_true", help="the --folder is there already: only the report")
    parser.add_argument("--src", type=Path, default=ROOT, help="the checkout whose genbatch writes the report")
    parser.add_argument("--repeat", type=int, default=1, help="write the report this many times")
    args = parser.parse_args()
    images = args.images or args.thumbs or args.demo is not None
    thumbs = args.thumbs or args.demo is not None
    out = args.demo or args.folder or Path(tempfile.mkdtemp(prefix="genbatch-report-bench-"))
    try:
        if not args.reuse:
            t0 = time.perf_counter()
            make_fake_out(out, args.n, images=images, files=not args.no_files)
            print(f"records: {args.n:,}  setup: {time.perf_counter() - t0:.1f} s")
        for _ in range(args.repeat):
            wall, cpu, peak_mb = report_in_child(out, thumbs, args.src)
            pages = out / ".genbatch-report"
            n_pages = len(os.listdir(pages)) if pages.is_dir() else 0
            print(
                f"write_html_report(thumbs={thumbs}) [{args.src}]: {wall:.2f} s ({cpu:.2f} s CPU), "
                f"peak RSS {peak_mb:.0f} MB, "
                f"report.html {(out / 'report.html').stat().st_size / 1e6:.1f} MB, {n_pages} page files"
            )
        if args.demo:
            print(f"open file://{(out / 'report.html').resolve()}")
    finally:
        if args.demo is None and args.folder is None:
            shutil.rmtree(out, ignore_errors=True)


def report_in_child(out: Path, thumbs: bool, src: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of a fresh process that writes the report."""
    code = f"from genbatch.report.html import write_html_report; write_html_report({str(out)!r}, thumbs={thumbs})"
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(src).resolve())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if after.ru_maxrss <= before.ru_maxrss:  # the largest child so far: run each size in its own bench
        print("note: peak RSS not above an earlier child's; run one report per bench process")
    return wall, cpu, after.ru_maxrss / 1024


if __name__ == "__main__":
    main()
