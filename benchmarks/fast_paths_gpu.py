"""The torch fast paths one at a time, in one process, on one pipeline: seconds per image of the
pipeline call (model time: start-up and writing left out) for a released architecture with
random weights (genbatch.pipelines.architectures), built once on the GPU.

    python benchmarks/fast_paths_gpu.py --model sd15 --dtype fp16 --batch 16 --out fast-paths.json

Variants, each timed over ``--batches`` batches after one short warm-up call of the same shape:
the diffusers defaults with PIL output (what the plain loop gets), the same with numpy output
(what genbatch asks for), genbatch's explicit SDPA processors, with ``--channels-last`` the
channels-last UNet, then UNet and VAE, and fused QKV projections; then genbatch's own
``generate`` on a pipeline of its own loading (its defaults: embedding reuse, CPU generators, the
uint8 check on the GPU), and, with ``--compile MODE``, the same with its UNet compiled (the
compile time reported apart).
Results are written to ``--out`` after every variant, so a run stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sd15", help="sd15, sdxl or flux-schnell")
    parser.add_argument("--dtype", default="fp16")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--compile", default=None, help="a torch.compile mode for genbatch's last variant")
    parser.add_argument("--channels-last", action="store_true", help="also time channels-last UNet and VAE")
    parser.add_argument("--out", type=Path, default=Path("fast-paths.json"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the shrunk configs (a CPU check of this script)")
    args = parser.parse_args()

    import torch

    from genbatch.backends import BackendOptions
    from genbatch.backends.fast_paths import set_attention
    from genbatch.backends.torch_backend import TorchBackend
    from genbatch.backends.torch_options import TorchOptions
    from genbatch.bench.worker import prompts
    from genbatch.jobs import Defaults, Target
    from genbatch.manifest.read import Row
    from genbatch.pipelines.architectures import build_pipeline, write_architecture
    from genbatch.pipelines.families import read_defaults
    from genbatch.pipelines.model_lookup import resolve_model
    from genbatch.plan.expand import expand_jobs

    work = Path(tempfile.mkdtemp())
    folder = write_architecture(args.model, work / args.model, tiny=args.tiny)
    defaults = read_defaults(folder)
    steps = args.steps or defaults["steps"]
    size = 64 if args.tiny else int(defaults.get("width") or 512)
    call: dict[str, Any] = {"num_inference_steps": steps, "width": size, "height": size}
    if defaults.get("guidance_scale") is not None:
        call["guidance_scale"] = defaults["guidance_scale"]
    texts = prompts(args.batch * (args.batches + 1))
    found: dict[str, Any] = {
        "model": args.model,
        "dtype": args.dtype,
        "batch": args.batch,
        "batches": args.batches,
        "steps": steps,
        "size": size,
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else args.device,
        "torch": torch.__version__,
        "variants": {},
    }

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(name: str, run: Callable[[list[str], int, int], Any]) -> None:
        run(texts[: args.batch], 0, min(steps, 4))  # warm-up: kernels chosen, memory pooled
        sync()
        began = time.perf_counter()
        for b in range(1, args.batches + 1):
            run(texts[b * args.batch : (b + 1) * args.batch], b * args.batch, steps)
        sync()
        seconds = (time.perf_counter() - began) / (args.batch * args.batches)
        found["variants"][name] = round(seconds, 4)
        print(f"{name:42} {seconds:.4f} s/image", flush=True)
        args.out.write_text(json.dumps(found, indent=2), encoding="utf-8")

    pipe = build_pipeline(folder, args.device, args.dtype)
    pipe.set_progress_bar_config(disable=True)

    def plain(output_type: str) -> Callable[[list[str], int, int], Any]:
        def run(batch: list[str], first: int, n_steps: int) -> Any:
            generators = [torch.Generator("cpu").manual_seed(first + k) for k in range(len(batch))]
            steps_call = {**call, "num_inference_steps": n_steps}
            return pipe(prompt=batch, generator=generators, output_type=output_type, **steps_call)

        return run

    timed("diffusers defaults, PIL output", plain("pil"))
    timed("diffusers defaults, numpy output", plain("np"))
    set_attention(pipe, "sdpa")
    timed("+ explicit SDPA processors", plain("np"))
    if args.channels_last and getattr(pipe, "unet", None) is not None:
        for part in ("unet", "vae"):
            getattr(pipe, part).to(memory_format=torch.channels_last)
            timed(f"+ channels-last {'UNet' if part == 'unet' else 'UNet and VAE'}", plain("np"))
        for part in ("unet", "vae"):
            getattr(pipe, part).to(memory_format=torch.contiguous_format)
    if hasattr(pipe, "fuse_qkv_projections"):
        pipe.fuse_qkv_projections()
        timed("+ fused QKV projections", plain("np"))
    pipe = None  # genbatch's own loads below hold the GPU alone
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()

    model = resolve_model(str(folder))
    for compiled in (None, args.compile) if args.compile else (None,):
        loaded = TorchBackend().load(
            model, BackendOptions(args.device, args.dtype, torch=TorchOptions(compile=compiled))
        )

        def ours(batch: list[str], first: int, n_steps: int, loaded: Any = loaded) -> Any:
            rows = [Row(i, i + 2, {}, prompt=p, seed=first + i) for i, p in enumerate(batch)]
            jobs = expand_jobs(
                rows, {None: model}, Defaults(steps=n_steps, width=size, height=size), Target("torch", args.dtype)
            )
            return loaded.generate(jobs)

        if compiled:
            began = time.perf_counter()
            ours(texts[: args.batch], 0, 2)
            sync()
            found["compile_seconds"] = round(time.perf_counter() - began, 1)
            print(f"compiled ({compiled}) in {found['compile_seconds']} s", flush=True)
        timed(f"genbatch generate{f', --compile {compiled}' if compiled else ''}", ours)
        loaded.close()  # its pipeline released, its cached GPU memory given back
    limit = {"sd15": 0.105, "sdxl": 0.53, "flux-schnell": 0.39}.get(args.model)
    if limit and not args.tiny:
        best = min(found["variants"].values())
        found["fraction_of_limit"] = round(limit / best, 3)
        print(f"best {best:.4f} s/image = {limit / best:.0%} of the physical limit ({limit} s/image)")
    args.out.write_text(json.dumps(found, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
