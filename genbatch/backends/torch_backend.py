"""PyTorch backend: any diffusers text-to-image pipeline, loaded with ``from_pretrained``."""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..errors import GenbatchError, ModelError
from ..latents import initial_latents
from ..lora import apply_set as apply_lora_set
from ..models import ModelRef, is_onnx_export, keeps_own_scheduler
from ..a1111 import clip_skip_kwargs
from ..checkpoints import load_pipeline
from ..samplers import SchedulerCache, build as build_scheduler
from ..prompt_weighting import weighted_call
from .base import BackendOptions, GeneratedImage, to_uint8

DTYPES = ("fp32", "fp16", "bf16")


def quiet_hf_libraries() -> None:
    """diffusers/transformers print progress bars and advice on every load; in a batch job
    that is noise between our own progress lines. Users can still ask for it via the env."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def resolve_torch_device(device: str) -> str:
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise GenbatchError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); "
                                "use --device cpu or auto")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise GenbatchError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices")
        return device
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise GenbatchError("--device mps: MPS is not available here; use --device cpu or auto")
        return device
    if device == "cpu":
        return device
    raise GenbatchError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N or mps")


def resolve_dtype(device: str, dtype: str) -> str:
    dtype = (dtype or "auto").lower()
    if dtype == "auto":
        return "fp32" if device == "cpu" else "fp16"
    if dtype not in DTYPES:
        raise GenbatchError(f"--dtype {dtype!r}: expected auto, {', '.join(DTYPES)}")
    return dtype


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


class TorchBackend:
    name = "torch"

    def resolve(self, device: str, dtype: str) -> tuple[str, str]:
        resolved = resolve_torch_device(device)
        return resolved, resolve_dtype(resolved, dtype)

    def load(self, model: ModelRef, options: BackendOptions) -> "TorchGenerator":
        return TorchGenerator(model, device=options.device, dtype=options.dtype, scheduler=options.scheduler)


def swap_scheduler(current: Any, name: str | None) -> Any:
    """The pipeline's scheduler, or another one (a diffusers class name or an A1111 sampler
    name, with its options: genbatch.samplers) built from its config."""
    if keeps_own_scheduler(name, type(current).__name__):
        return current
    return build_scheduler(current, name)


def check_own_timesteps(own: Any, name: str | None, defaults: dict[str, Any], path: Path) -> None:
    """A model's own timesteps (genbatch.json) are used with its own scheduler (``own``, before
    any --scheduler swap), which must then take a list of timesteps."""
    if not defaults.get("timesteps") or not keeps_own_scheduler(name, type(own).__name__):
        return
    if "timesteps" not in inspect.signature(own.set_timesteps).parameters:
        raise ModelError(f'{path / "genbatch.json"}: "timesteps" needs a scheduler that takes a list of timesteps, '
                         f"and {type(own).__name__} does not (DPMSolverMultistepScheduler, EulerDiscreteScheduler "
                         "and DDPMScheduler do); change the scheduler or remove \"timesteps\"")


class TorchGenerator:
    backend = "torch"

    def __init__(self, model: ModelRef, *, device: str, dtype: str, scheduler: str | None):
        quiet_hf_libraries()
        import torch

        if is_onnx_export(model.path):
            raise ModelError(f"{model.path} is an ONNX export; run it with --backend onnx")
        self.device, self.dtype, self.model = device, dtype, model
        try:
            with warnings.catch_warnings():  # newer diffusers renames torch_dtype; both work
                warnings.simplefilter("ignore", FutureWarning)
                pipe = load_pipeline(model, torch_dtype(dtype))  # a folder, or a single file (+ --vae)
        except Exception as err:
            raise ModelError(f"cannot load {model.name} from {model.path}: {err}") from err
        if not hasattr(pipe, "unet") or not hasattr(pipe, "vae"):
            raise ModelError(f"{model.name}: {type(pipe).__name__} is not a text-to-image pipeline with a UNet "
                             "and a VAE, which the torch backend runs")
        check_own_timesteps(pipe.scheduler, scheduler, model.defaults, model.path)
        pipe.scheduler = swap_scheduler(pipe.scheduler, scheduler)
        self.schedulers = SchedulerCache(pipe.scheduler)  # a batch's own sampler (a manifest column)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        if device.startswith("cuda"):
            pipe.unet.to(memory_format=torch.channels_last)
        self.pipe = pipe
        self.scheduler_name = type(pipe.scheduler).__name__

    def describe(self) -> dict[str, Any]:
        import torch

        facts: dict[str, Any] = {"pipeline": type(self.pipe).__name__, "scheduler": self.scheduler_name}
        if self.device.startswith("cuda"):
            facts["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
        return facts

    def generate(self, jobs: Sequence[Any]) -> list[GeneratedImage]:
        import torch

        first = jobs[0]
        self.pipe.scheduler = self.schedulers.get(first.scheduler, first.scheduler_options)
        factor = self.pipe.vae_scale_factor
        latents = initial_latents(
            [j.seed for j in jobs], self.pipe.unet.config.in_channels, first.height // factor, first.width // factor
        ).to(self.device, torch_dtype(self.dtype))
        # Ancestral/SDE schedulers draw noise at each step: one CPU generator per image keeps
        # that per-image too.
        generators = [torch.Generator("cpu").manual_seed(j.seed) for j in jobs]
        apply_lora_set(self.pipe, first.values.get("lora"))  # genbatch.lora: the batch's LoRA set, or none
        with torch.inference_mode():
            out = self.pipe(
                **weighted_call(self.pipe, jobs, {"prompt": [j.prompt for j in jobs],  # genbatch.prompt_weighting
                                                  "negative_prompt": [j.negative_prompt for j in jobs]}),
                num_inference_steps=first.steps,
                timesteps=list(first.timesteps) if first.timesteps else None,
                guidance_scale=first.guidance_scale,
                height=first.height,
                width=first.width,
                latents=latents,
                generator=generators,
                output_type="np",
                **clip_skip_kwargs(self.pipe, first.clip_skip),
            )
        pixels, errors = to_uint8(out.images)
        flagged = getattr(out, "nsfw_content_detected", None) or [False] * len(jobs)
        results = []
        for job, image, error, nsfw in zip(jobs, pixels, errors, flagged):
            if nsfw:
                image, error = None, "the model's safety checker flagged this image"
            results.append(GeneratedImage(job, image, error))
        return results

    def release_memory(self) -> None:
        """Give cached accelerator memory back (after a batch failed, or at close)."""
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def close(self) -> None:
        self.pipe = None
        self.release_memory()
