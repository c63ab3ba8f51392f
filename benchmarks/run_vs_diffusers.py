"""genbatch vs a plain diffusers loop: same model, same batch size, every image saved as PNG.

    python benchmarks/run_vs_diffusers.py [--images 64] [--batch-size 8] [--model NAME] [--device cpu]

Both sides load the model once (not timed) and are timed from the first batch to the last
file on disk. The plain loop is what people write by hand: call the pipeline, then save each
image with Pillow on the same thread. genbatch adds per-image CPU latents, the ledger,
metadata and atomic writes, and overlaps PNG encoding with generation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any


def plain_diffusers(
    model_path: Path,
    prompts: list[str],
    batch_size: int,
    steps: int,
    guidance: float,
    device: str,
    dtype: str,
    out: Path,
) -> float:
    import torch
    from diffusers import DiffusionPipeline

    from genbatch.pipelines.torch_runtime import quiet_hf_libraries

    quiet_hf_libraries()
    from genbatch.pipelines.torch_runtime import torch_dtype

    pipe = DiffusionPipeline.from_pretrained(model_path, torch_dtype=torch_dtype(dtype)).to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe(prompt=prompts[:1], num_inference_steps=1, guidance_scale=guidance, output_type="pil")  # warm-up
    start = time.perf_counter()
    for first in range(0, len(prompts), batch_size):
        batch = prompts[first : first + batch_size]
        generator = torch.Generator("cpu").manual_seed(first)
        images = pipe(prompt=batch, num_inference_steps=steps, guidance_scale=guidance, generator=generator).images
        for offset, image in enumerate(images):
            image.save(out / f"{first + offset:06d}.png")
    return time.perf_counter() - start


def with_genbatch(
    model: str, prompts: list[str], batch_size: int, steps: int, guidance: float, device: str, dtype: str, out: Path
) -> tuple[float, dict]:
    from genbatch.pipelines.model_lookup import resolve_model
    from genbatch.plan.planner import Defaults, PlanOptions
    from genbatch.runner.options import EngineOptions, InputOptions, OutputOptions, RunOptions
    from genbatch.runner.run import run_manifest

    manifest = out.parent / "bench.txt"
    manifest.write_text("".join(p + "\n" for p in prompts))
    plan = PlanOptions(model=model, defaults=Defaults(steps=steps, guidance_scale=guidance))
    engine = EngineOptions(device=device, dtype=dtype, batch_size=batch_size)

    def options(folder: Path, **plan_changes: Any) -> RunOptions:
        return RunOptions(
            InputOptions(str(manifest)),
            OutputOptions(folder, html_report=False),
            replace(plan, **plan_changes),
            engine,
            quiet=True,
        )

    # Warm-up run in another folder: loads the model code paths once, like the plain loop.
    run_manifest(options(out.parent / "warm", limit=1))
    resolve_model(model)
    result = run_manifest(options(out))
    return result.summary.wall_seconds, result.summary.to_dict()


def main() -> None:
    from genbatch.pipelines.builtin import default_model_name
    from genbatch.pipelines.model_lookup import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32, fp16 or bf16 (default: fp32 on CPU, fp16 on GPU)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="alternate the two sides N times; report medians")
    args = parser.parse_args()

    model = resolve_model(args.model or default_model_name())
    steps = args.steps or model.defaults["steps"]
    dtype = args.dtype or ("fp32" if args.device == "cpu" else "fp16")
    guidance = model.defaults["guidance_scale"]
    prompts = [
        f"a {c} {s} on a {b} background"
        for c, s, b in zip(
            ["red", "green", "blue", "yellow"] * 64,
            ["circle", "square", "triangle"] * 86,
            ["white", "black", "purple", "orange", "blue"] * 52,
        )
    ][: args.images]
    plains, ours_all = [], []
    for repeat in range(args.repeats):  # alternate, so a noisy neighbour hits both sides alike
        with tempfile.TemporaryDirectory() as tmp:
            plain_out, gb_out = Path(tmp) / "plain", Path(tmp) / "gb" / "out"
            plain_out.mkdir()
            gb_out.parent.mkdir()
            plains.append(
                plain_diffusers(model.path, prompts, args.batch_size, steps, guidance, args.device, dtype, plain_out)
            )
            seconds, summary = with_genbatch(
                str(model.path), prompts, args.batch_size, steps, guidance, args.device, dtype, gb_out
            )
            ours_all.append(seconds)
    plain, ours = statistics.median(plains), statistics.median(ours_all)
    n = len(prompts)
    result = {
        "model": model.name,
        "images": n,
        "batch_size": args.batch_size,
        "steps": steps,
        "device": summary["device"],
        "dtype": dtype,
        "plain_diffusers_images_per_s": round(n / plain, 2),
        "genbatch_images_per_s": round(n / ours, 2),
        "ratio_genbatch_over_plain": round(plain / ours, 3),
        "genbatch_failed": summary["counts"]["failed"],
        "plain_seconds": [round(s, 2) for s in plains],
        "genbatch_seconds": [round(s, 2) for s in ours_all],
    }
    print(f"{'':24}{'seconds':>10}{'images/s':>10}")
    print(f"{'plain diffusers loop':24}{plain:>10.2f}{n / plain:>10.2f}")
    print(f"{'genbatch run':24}{ours:>10.2f}{n / ours:>10.2f}")
    print(f"genbatch / plain throughput: {plain / ours:.3f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
