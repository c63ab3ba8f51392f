"""ONNX Runtime vs torch on the default model: export time, then images/s side by side.

    python benchmarks/onnx_vs_torch.py                       # CPU, batch 1 and 8, 16 images each
    python benchmarks/onnx_vs_torch.py --images 32 --batch 1 4 8
    python benchmarks/onnx_vs_torch.py --device cuda --fp16  # GPU: fp16 export vs torch fp16

Both backends run the same jobs (same prompts, seeds, steps, size) through their
generators, after one warm-up batch, best of --repeat passes, so the figures are the
backends' own, without the image writer. The last column is the largest uint8 difference from torch's images.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genbatch.backends import BackendOptions, get_backend  # noqa: E402
from genbatch.pipelines.builtin import default_model_name  # noqa: E402
from genbatch.pipelines.model_lookup import resolve_model  # noqa: E402

PROMPTS = [
    "a red circle",
    "a blue square on green",
    "two yellow triangles",
    "a purple star",
    "an orange ring",
    "a small white dot",
    "three black lines",
    "a pink heart",
]


def jobs(count: int, defaults: dict, steps: int | None) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(
            prompt=PROMPTS[i % len(PROMPTS)],
            negative_prompt="",
            seed=1000 + i,
            steps=steps or defaults["steps"],
            guidance_scale=float(defaults["guidance_scale"]),
            width=defaults["width"],
            height=defaults["height"],
        )
        for i in range(count)
    ]


def measure(generator, todo: list, batch: int, repeat: int) -> tuple[float, dict[int, np.ndarray]]:
    """Best of ``repeat`` timed passes over ``todo`` (the machine may be shared), after a
    warm-up batch (first-call allocations, kernel selection)."""
    generator.generate(todo[:batch])
    best, pixels = float("inf"), {}
    for _ in range(repeat):
        began = time.perf_counter()
        for start in range(0, len(todo), batch):
            for result in generator.generate(todo[start : start + batch]):
                if result.pixels is None:
                    raise SystemExit(f"seed {result.job.seed} failed: {result.error}")
                pixels[result.job.seed] = result.pixels.astype(int)
        best = min(best, time.perf_counter() - began)
    return best, pixels


def timed_export(model: str, out: Path, *extra: str) -> float:
    """Wall time of ``genbatch export`` as a user runs it (a fresh process, imports included)."""
    began = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "genbatch.cli.app",
            "export",
            "--to",
            "onnx",
            "--model",
            model,
            "--out",
            str(out),
            *extra,
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"default: {default_model_name()}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp16", action="store_true", help="fp16 export, torch in fp16")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=16, help="images per measurement")
    parser.add_argument("--steps", type=int, default=None, help="default: the model's")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best counts")
    args = parser.parse_args()

    model = resolve_model(args.model)
    with tempfile.TemporaryDirectory(prefix="genbatch-bench-") as scratch:
        source = model.name if model.source != "local" else str(model.path)
        fp16 = ["--fp16"] if args.fp16 else []
        export_seconds = timed_export(source, Path(scratch) / "onnx", "--no-verify", *fp16)
        verified_seconds = timed_export(source, Path(scratch) / "verified", *fp16)
        exported = resolve_model(str(Path(scratch) / "onnx"))
        todo = jobs(args.images, model.defaults, args.steps)
        dtype = "fp16" if args.fp16 else "fp32"
        rows = []
        reference: dict[int, dict[int, np.ndarray]] = {}
        for name, ref in (("torch", model), ("onnx", exported)):
            backend = get_backend(name)
            device, resolved = backend.resolve(args.device, dtype if name == "torch" else "auto")
            generator = backend.load(ref, BackendOptions(device=device, dtype=resolved))
            label = (
                f"{name} ({', '.join(p.replace('ExecutionProvider', '') for p in generator.describe()['providers'])})"
                if name == "onnx"
                else f"torch ({device}, {resolved})"
            )
            for batch in args.batch:
                seconds, pixels = measure(generator, todo, batch, args.repeat)
                if name == "torch":
                    reference[batch] = pixels
                base = reference[args.batch[0]]
                diff = max(int(np.abs(pixels[s] - base[s]).max()) for s in pixels)
                rows.append((label, batch, len(todo), seconds, len(todo) / seconds, diff))
            generator.close()

    print(
        f"\nmodel {model.name} ({model.defaults['width']}x{model.defaults['height']}, "
        f"{todo[0].steps} steps, guidance {todo[0].guidance_scale:g}), device {args.device}, {dtype}"
    )
    print(
        f"genbatch export: {export_seconds:.1f} s with --no-verify, {verified_seconds:.1f} s with verification "
        f"(wall time of the command)\n"
    )
    torch_speed = {batch: speed for label, batch, _, _, speed, _ in rows if label.startswith("torch")}
    print(f"{'backend':<28} {'batch':>5} {'images':>6} {'seconds':>8} {'images/s':>9} {'vs torch':>8} {'max diff':>8}")
    for label, batch, count, seconds, speed, diff in rows:
        print(
            f"{label:<28} {batch:>5} {count:>6} {seconds:>8.2f} {speed:>9.2f} {speed / torch_speed[batch]:>7.2f}x "
            f"{diff:>8}"
        )


if __name__ == "__main__":
    main()
