"""One measurement of ``genbatch bench``, run as a process of its own so that its time, start-up
included, and its peak memory are its own:

    python -m genbatch.bench.worker SPEC.json   ->  one JSON line on stdout

``side`` is ``genbatch`` (``run_manifest`` over a text manifest of the prompts, as ``genbatch
run`` does, reports included) or ``plain``: the loop a user writes by hand (load the pipeline,
call it on each batch of prompts, ``image.save`` each PNG on the same thread).
"""

from __future__ import annotations

import time

START = time.time()  # before the heavy imports: they are part of what is measured

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


def plain(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch
    from diffusers import DiffusionPipeline

    from genbatch.pipelines.architectures import build_pipeline, is_random_architecture
    from genbatch.pipelines.torch_runtime import quiet_hf_libraries, torch_dtype

    quiet_hf_libraries()
    began = time.perf_counter()
    path = Path(spec["model"])
    if is_random_architecture(path):
        pipe = build_pipeline(path, spec["device"], spec["dtype"])
    else:
        pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=torch_dtype(spec["dtype"]), use_safetensors=True).to(
            spec["device"]
        )
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - began
    texts, size, model_seconds, first = prompts(spec["images"]), spec["batch_size"], 0.0, None
    for start in range(0, len(texts), size):
        batch = texts[start : start + size]
        generators = [torch.Generator("cpu").manual_seed(start + k) for k in range(len(batch))]
        began = time.perf_counter()
        images = pipe(prompt=batch, generator=generators, **_call(spec)).images
        model_seconds += time.perf_counter() - began
        for k, image in enumerate(images):
            image.save(out / f"{start + k:06d}.png")
        first = first if first is not None else time.time() - START
    return {"load_seconds": load, "model_seconds": model_seconds, "first_image_seconds": first, "failed": 0}


def with_genbatch(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    from genbatch.backends.torch_options import TorchOptions
    from genbatch.plan.planner import Defaults, PlanOptions
    from genbatch.runner.options import EngineOptions, InputOptions, OutputOptions, RunOptions
    from genbatch.runner.run import run_manifest

    manifest = out.parent / f"{out.name}-prompts.txt"
    manifest.write_text("".join(p + "\n" for p in prompts(spec["images"])), encoding="utf-8")
    call = _call(spec)
    defaults = Defaults(
        steps=call["num_inference_steps"],
        guidance_scale=call.get("guidance_scale"),
        width=call["width"],
        height=call["height"],
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
    return {
        "first_image_seconds": min(times) - START if times else None,
        "model_seconds": result.summary.to_dict().get("generation_seconds"),
        "failed": result.summary.counts.failed,
        "exit_code": result.exit_code,
    }


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    found = plain(spec, out) if spec["side"] == "plain" else with_genbatch(spec, out)
    found["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found["peak_gpu_mb"] = None
    torch = sys.modules.get("torch")
    if torch is not None and spec["device"].startswith("cuda"):
        found["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    found["process_seconds"] = time.time() - START
    return found


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))))
