"""One measurement of ``genbatch bench``, run as a process of its own so that its time, start-up
included, and its peak memory are its own:

    python -m genbatch.bench.worker SPEC.json   ->  one JSON line on stdout

``side`` is ``genbatch`` (``run_manifest`` over a manifest of the prompts, as ``genbatch run``
does, reports included), or ``plain`` / ``exact``: the loop a user writes by hand (load the
pipeline, call it on each batch of prompts, ``image.save`` each PNG on the same thread), with the
speed options of ``by_hand`` applied as a diffusers user applies them (:func:`apply_by_hand`; the
``exact`` side gets none). Both sides give image ``i`` the seed ``i`` (one CPU generator per
image), so that the same options make the same pixels on both. The JSON line records what each
side applied (``applied``) and, on a GPU, ``torch.cuda.max_memory_allocated`` while the model
loaded and while it generated.
"""

from __future__ import annotations

import time

START = time.time()  # before the heavy imports: they are part of what is measured

import csv  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def prompts(count: int) -> list[str]:
    """Distinct prompts, as a manifest of varied rows has."""
    colours = ["red", "green", "blue", "yellow", "white"]
    things = ["circle", "square", "triangle", "lighthouse", "fox", "teapot", "bicycle"]
    places = ["on a beach", "in a forest", "at night", "in the snow", "on a table", "in space"]
    return [f"a {colours[i % 5]} {things[i % 7]} {places[i % 6]}, picture {i}" for i in range(count)]


def _call(spec: dict[str, Any]) -> dict[str, Any]:
    call: dict[str, Any] = {"num_inference_steps": spec["steps"], "width": spec["width"], "height": spec["height"]}
    if spec.get("guidance_scale") is not None:
        call["guidance_scale"] = spec["guidance_scale"]
    if spec.get("max_sequence_length"):
        call["max_sequence_length"] = spec["max_sequence_length"]
    return call


# The untimed warm-up call of a compiled denoiser, as genbatch's (torch_backend.WARM_UP_STEPS):
# the first call compiles, the next records CUDA graphs, the third replays them.
WARM_UP_STEPS = 3


def plain(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch
    from diffusers import DiffusionPipeline

    from genbatch.pipelines.architectures import build_pipeline, is_random_architecture
    from genbatch.pipelines.torch_runtime import quiet_hf_libraries, torch_dtype

    quiet_hf_libraries()
    options = spec.get("by_hand") or {}
    nf4 = options.get("quantize") == "nf4"
    began = time.perf_counter()
    path = Path(spec["model"])
    if is_random_architecture(path):
        pipe = build_pipeline(path, spec["device"], spec["dtype"], quantize="nf4" if nf4 else None)
    else:
        loading = _nf4_loading(path, torch_dtype(spec["dtype"])) if nf4 else {}
        pipe = DiffusionPipeline.from_pretrained(
            path, torch_dtype=torch_dtype(spec["dtype"]), use_safetensors=True, **loading
        ).to(spec["device"])
    pipe.set_progress_bar_config(disable=True)
    calls = apply_by_hand(pipe, options, spec["steps"])
    load = time.perf_counter() - began
    memory = _after_load(spec["device"])
    texts, size, model_seconds, first = prompts(spec["images"]), spec["batch_size"], 0.0, None
    if options.get("compile"):  # as a user of torch.compile does, and genbatch: one untimed call first
        warm = {**_call(spec), "num_inference_steps": WARM_UP_STEPS}
        generators = [torch.Generator("cpu").manual_seed(k) for k in range(min(size, len(texts)))]
        pipe(prompt=texts[:size], generator=generators, **warm)
    for start in range(0, len(texts), size):
        batch = texts[start : start + size]
        generators = [torch.Generator("cpu").manual_seed(start + k) for k in range(len(batch))]
        began = time.perf_counter()
        images = pipe(prompt=batch, generator=generators, **_call(spec)).images
        model_seconds += time.perf_counter() - began
        for k, image in enumerate(images):
            image.save(out / f"{start + k:06d}.png")
        first = first if first is not None else time.time() - START
    applied = {k: v for k, v in options.items() if k != "compile_backend"}
    return {
        "load_seconds": load,
        "model_seconds": model_seconds,
        "first_image_seconds": first,
        "failed": 0,
        "applied": {**applied, "calls": calls},
        **memory,
    }


def apply_by_hand(pipe: Any, options: dict[str, Any], steps: int) -> list[str]:
    """The speed options as a diffusers user applies them to a loaded pipeline, with the settings
    genbatch uses (genbatch.backends.fast_paths), so that the same options make the same pixels:
    torchao's ``quantize_`` on the denoiser, channels-last, an attention backend, a step cache
    (``enable_cache``) and ``torch.compile`` (``compile_repeated_blocks`` for ``regional``; lazy,
    so the order does not matter to it). nf4 was applied as the pipeline loaded. Returns the
    calls made, as code."""
    import torch

    part = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    model, calls = getattr(pipe, part), []
    quantize = options.get("quantize")
    if quantize in ("int8", "fp8", "int4"):
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Int4WeightOnlyConfig,
            Int8WeightOnlyConfig,
            PerRow,
            quantize_,
        )

        made = {
            "int8": (lambda: Int8WeightOnlyConfig(), "Int8WeightOnlyConfig()"),
            "fp8": (
                lambda: Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
                "Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())",
            ),
            "int4": (
                lambda: Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d"),
                'Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d")',
            ),
        }[quantize]
        quantize_(model, made[0]())
        calls.append(f"quantize_(pipe.{part}, {made[1]})")
    elif quantize == "nf4":
        calls.append(f"bitsandbytes NF4 on pipe.{part} as it loaded")
    if options.get("channels_last") == "on":
        for name in ("unet", "vae"):
            if getattr(pipe, name, None) is not None:
                getattr(pipe, name).to(memory_format=torch.channels_last)
                calls.append(f"pipe.{name}.to(memory_format=torch.channels_last)")
    if options.get("attention"):
        model.set_attention_backend(options["attention"])
        calls.append(f"pipe.{part}.set_attention_backend({options['attention']!r})")
    if options.get("cache"):
        config, code = _cache_config(pipe, options["cache"], options.get("cache_threshold"), steps)
        model.enable_cache(config)
        calls.append(f"pipe.{part}.enable_cache({code})")
    mode, backend = options.get("compile"), options.get("compile_backend") or "inductor"
    if mode == "regional":
        model.compile_repeated_blocks(fullgraph=False, dynamic=False, backend=backend)
        calls.append(f"pipe.{part}.compile_repeated_blocks(dynamic=False, backend={backend!r})")
    elif mode:
        settings = {"mode": mode} if backend == "inductor" and mode != "default" else {}
        model.compile(dynamic=False, backend=backend, **settings)
        calls.append(f"pipe.{part}.compile(dynamic=False, backend={backend!r}, mode={settings.get('mode')!r})")
    return calls


def _cache_config(pipe: Any, cache: str, threshold: float | None, steps: int) -> tuple[Any, str]:
    """diffusers' config of a step cache, and its code."""
    from diffusers.hooks import FasterCacheConfig, FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    if cache == "first-block":
        return FirstBlockCacheConfig(threshold=threshold), f"FirstBlockCacheConfig(threshold={threshold})"
    if cache == "taylorseer":
        return TaylorSeerCacheConfig(), "TaylorSeerCacheConfig()"
    if cache == "magcache":
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        config = MagCacheConfig(threshold=threshold, num_inference_steps=steps, mag_ratios=FLUX_MAG_RATIOS)
        return config, f"MagCacheConfig(threshold={threshold}, num_inference_steps={steps}, mag_ratios=FLUX_MAG_RATIOS)"
    config = FasterCacheConfig(
        current_timestep_callback=lambda: pipe.current_timestep, is_guidance_distilled=True, tensor_format="BCHW"
    )
    return config, "FasterCacheConfig(current_timestep_callback=..., is_guidance_distilled=True, tensor_format='BCHW')"


def _nf4_loading(path: Path, dtype: Any) -> dict[str, Any]:
    """``from_pretrained``'s argument for bitsandbytes NF4 on the denoiser of a model folder."""
    from diffusers.quantizers import PipelineQuantizationConfig

    part = "transformer" if (path / "transformer").is_dir() else "unet"
    config = PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype},
        components_to_quantize=[part],
    )
    return {"quantization_config": config}


def _after_load(device: str) -> dict[str, Any]:
    """On a CUDA device: the memory peak while loading (MiB), then the peak reset, so that the end
    of the process gives the peak while generating (as genbatch's run.json records them)."""
    if not device.startswith("cuda"):
        return {}
    import torch

    peak = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return {"peak_gpu_load_mb": peak}


def with_genbatch(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    from genbatch.backends.torch_options import TorchOptions
    from genbatch.plan.planner import Defaults, PlanOptions
    from genbatch.runner.options import EngineOptions, InputOptions, OutputOptions, RunOptions
    from genbatch.runner.run import run_manifest

    manifest = out.parent / f"{out.name}-prompts.csv"
    with manifest.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("prompt", "seed"), *((p, i) for i, p in enumerate(prompts(spec["images"])))])
    call = _call(spec)
    defaults = Defaults(
        steps=call["num_inference_steps"],
        guidance_scale=call.get("guidance_scale"),
        width=call["width"],
        height=call["height"],
        cache=spec.get("cache"),
        cache_threshold=spec.get("cache_threshold"),
        quantize=spec.get("quantize"),
    )
    options = RunOptions(
        input=InputOptions(str(manifest)),
        output=OutputOptions(out),
        plan=PlanOptions(model=spec["model"], backend=spec["backend"], defaults=defaults),
        engine=EngineOptions(device=spec["device"], dtype=spec["dtype"], batch_size=spec["batch_size"]),
        torch=TorchOptions(**(spec.get("torch_options") or {})),
        quiet=True,
    )
    result = run_manifest(options)
    times = [p.stat().st_mtime for p in out.rglob("*.png")]  # the earliest is the first image
    facts = result.summary.backend_facts
    ledger = out / "genbatch.jsonl"
    record = json.loads(ledger.read_text(encoding="utf-8").splitlines()[0]) if ledger.exists() else {}
    memory = facts.get("gpu_memory_mb") or {}
    found = {
        "first_image_seconds": min(times) - START if times else None,
        "model_seconds": result.summary.to_dict().get("generation_seconds"),
        "failed": result.summary.counts.failed,
        "exit_code": result.exit_code,
        "applied": {
            "cache": record.get("cache"),
            "cache_threshold": record.get("cache_threshold"),
            "quantize": facts.get("quantize"),
            "compile": facts.get("compile"),
        },
    }
    if memory:
        found.update(peak_gpu_load_mb=memory.get("load_peak"), peak_gpu_generate_mb=memory.get("generate_peak"))
    return found


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    found = with_genbatch(spec, out) if spec["side"] == "genbatch" else plain(spec, out)
    found["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found["peak_gpu_mb"] = None
    torch = sys.modules.get("torch")
    if torch is not None and spec["device"].startswith("cuda"):
        # the peak was reset after the load (both sides): the process's is the larger of the two
        if spec["side"] != "genbatch":
            found["peak_gpu_generate_mb"] = torch.cuda.max_memory_allocated() / 2**20
        peaks = [found.get("peak_gpu_load_mb"), found.get("peak_gpu_generate_mb")]
        found["peak_gpu_mb"] = max((p for p in peaks if p is not None), default=None)
    found["process_seconds"] = time.time() - START
    return found


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))))
