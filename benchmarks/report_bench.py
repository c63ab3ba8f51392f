"""How long does ``write_html_report`` take on a big output folder?

    python benchmarks/report_bench.py                 # 100,000 ledger records, no thumbnails
    python benchmarks/report_bench.py --n 20000 --thumbs
    python benchmarks/report_bench.py --demo demo-out --n 50   # a folder to look at

The folder is fake: a ledger written here, with empty files standing in for the images
(real little PNGs with ``--images``, which ``--thumbs`` and ``--demo`` imply). A few
percent of the jobs are failed and a few rows skipped, as in a real run.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genbatch.report_html import write_html_report  # noqa: E402

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


def make_fake_out(out: Path, n: int, *, images: bool, seed: int = 0) -> None:
    """Write a ledger of ``n`` jobs (and their image files) into ``out``."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc)
    clock = started
    lines = []
    for index in range(n):
        prompt = f"{rng.choice(SUBJECTS)}, {rng.choice(STYLES)}"
        seed_value = rng.randrange(1, 10_000)
        seconds = rng.uniform(0.6, 1.4) * (2.5 if 0.4 < index / max(n, 1) < 0.5 else 1.0)
        clock += timedelta(seconds=seconds)
        status = "failed" if rng.random() < 0.03 else "skipped" if rng.random() < 0.02 else "done"
        file = f"{index + 1:06d}-{prompt[:24].replace(' ', '-').replace(',', '')}-{seed_value}.png"
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
                    "key": None,
                    "seed": None,
                    "steps": None,
                    "seconds": None,
                    "error": "row 7: steps must be a positive integer, got 'many'",
                }
            )
        if status == "done" and images:
            _write_image(out / file, index, rng)
        elif status == "done":
            (out / file).touch()
        lines.append(json.dumps(record))
    (out / "genbatch.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


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
    parser.add_argument("--demo", type=Path, help="write the folder here and keep it")
    args = parser.parse_args()
    images = args.images or args.thumbs or args.demo is not None
    out = args.demo or Path(tempfile.mkdtemp(prefix="genbatch-report-bench-"))
    try:
        t0 = time.perf_counter()
        make_fake_out(out, args.n, images=images)
        t1, cpu1 = time.perf_counter(), time.process_time()
        report = write_html_report(out, thumbs=args.thumbs or args.demo is not None)
        t2, cpu2 = time.perf_counter(), time.process_time()
        size = report.stat().st_size
        print(f"records: {args.n:,}  setup: {t1 - t0:.1f} s")
        print(
            f"write_html_report(thumbs={args.thumbs or args.demo is not None}): {t2 - t1:.2f} s "
            f"({cpu2 - cpu1:.2f} s CPU in this process), report.html {size / 1e6:.1f} MB"
        )
        if args.demo:
            print(f"open file://{report.resolve()}")
    finally:
        if args.demo is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
