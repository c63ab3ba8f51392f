"""PyTorch backend: diffusers text-to-image pipelines, loaded with ``from_pretrained``.

What differs between families (SD, SDXL, SD3, Flux, PixArt, Sana, the generic path) is
in :mod:`genbatch.families`; this module loads, places and calls the pipeline.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..a1111 import clip_skip_kwargs
from ..checkpoints import load_pipeline
from ..errors import GenbatchError, ModelError
from ..families import call_kwargs, detect, negative_groups
from ..fast_paths import compile_denoiser, padded, set_attention, set_channels_last
from ..lora import apply_set as apply_lora_set
from ..model_files import keeps_own_scheduler
from ..model_lookup import ModelRef
from ..prompt_embeds import EmbeddingCache
from ..prompt_weighting import weighted_call
from ..samplers import SchedulerCache
from ..samplers import build as build_scheduler
from .base import BackendOptions, GeneratedImage, tensor_to_uint8, to_uint8

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
            raise GenbatchError(
                f"--device {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu or auto"
            )
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


OFFLOAD = ("none", "model", "sequential")


class TorchBackend:
    name = "torch"

    def resolve(self, device: str, dtype: str) -> tuple[str, str]:
        resolved = resolve_torch_device(device)
        return resolved, resolve_dtype(resolved, dtype)

    def load(self, model: ModelRef, options: BackendOptions) -> TorchGenerator:
        """``options.extra``: ``offload`` (none, model, sequential), ``vae_tiling``, ``vae_slicing``,
        ``reuse_embeddings`` (default on), and the fast paths of :mod:`genbatch.fast_paths`:
        ``attention``, ``channels_last``, ``compile`` (and ``compile_backend``)."""
        return TorchGenerator(model, options=options)


def scheduler_class(name: str, current: Any) -> Any:
    """The diffusers scheduler class ``--scheduler name`` asks for; one line naming the
    package to install where it needs one that is missing (DPMSolverSDEScheduler: torchsde)."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_config"):
        compatible = sorted(c.__name__ for c in getattr(current, "compatibles", []))
        raise GenbatchError(
            f"--scheduler {name!r}: not a diffusers scheduler; this model accepts: " + ", ".join(compatible)
        )
    missing = [b for b in getattr(cls, "_backends", []) if b != "torch" and not _installed(b)]
    if missing:  # diffusers' placeholder for a scheduler whose package is not installed
        raise GenbatchError(
            f"--scheduler {name} needs the Python package {missing[0]}, which is not installed: "
            f"pip install {missing[0]}"
        )
    return cls


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


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
        raise ModelError(
            f'{path / "genbatch.json"}: "timesteps" needs a scheduler that takes a list of timesteps, '
            f"and {type(own).__name__} does not (DPMSolverMultistepScheduler, EulerDiscreteScheduler "
            'and DDPMScheduler do); change the scheduler or remove "timesteps"'
        )


class TorchGenerator:
    backend = "torch"

    def __init__(self, model: ModelRef, *, options: BackendOptions):
        quiet_hf_libraries()
        extra = options.extra
        offload = extra.get("offload") or "none"
        if offload not in OFFLOAD:
            raise GenbatchError(f"--offload {offload!r}: expected {', '.join(OFFLOAD)}")
        family = detect(model.path)  # before loading: a refused pipeline costs no load
        self.device, self.dtype, self.model, self.family = options.device, options.dtype, model, family
        self.options: dict[str, Any] = {
            "offload": offload,
            "vae_tiling": bool(extra.get("vae_tiling")),
            "vae_slicing": bool(extra.get("vae_slicing")),
        }
        try:
            with warnings.catch_warnings():  # newer diffusers renames torch_dtype; both work
                warnings.simplefilter("ignore", FutureWarning)
                pipe = self.make_pipeline(model, options.dtype)
        except GenbatchError:
            raise
        except Exception as err:
            raise ModelError(f"cannot load {model.name} from {model.path}: {err}") from err
        check_own_timesteps(pipe.scheduler, options.scheduler, model.defaults, model.path)
        pipe.scheduler = swap_scheduler(pipe.scheduler, options.scheduler)
        self.schedulers = SchedulerCache(pipe.scheduler)  # a batch's own sampler (a manifest column)
        pipe.set_progress_bar_config(disable=True)
        place(pipe, options.device, offload)
        if self.options["vae_tiling"]:
            pipe.vae.enable_tiling()
        if self.options["vae_slicing"]:
            pipe.vae.enable_slicing()
        self.pipe = pipe
        self._fast_paths(extra)
        self.scheduler_name = type(pipe.scheduler).__name__

    def make_pipeline(self, model: ModelRef, dtype: str) -> Any:
        """The diffusers pipeline of ``model``: a folder, or a single file (+ --vae); a released
        architecture with random weights (genbatch.architectures) is built on the device."""
        from ..architectures import build_pipeline, is_random_architecture

        if is_random_architecture(model.path):
            return build_pipeline(model.path, self.device if self.options["offload"] == "none" else "cpu", dtype)
        return load_pipeline(model, torch_dtype(dtype))

    def _fast_paths(self, extra: dict[str, Any]) -> None:
        reuse = extra.get("reuse_embeddings", True)
        self.embeddings = EmbeddingCache() if reuse else None
        self.compiled = compile_denoiser(self.pipe, extra.get("compile"), extra.get("compile_backend") or "inductor")
        self.batch_shapes: dict[tuple[Any, ...], int] = {}  # a compiled denoiser's batch size per shape
        self.options.update(
            reuse_embeddings=bool(reuse),
            attention=set_attention(self.pipe, extra.get("attention")),
            channels_last=set_channels_last(self.pipe, extra.get("channels_last")),
            compile=self.compiled,
        )

    def describe(self) -> dict[str, Any]:
        import torch

        facts: dict[str, Any] = {
            "pipeline": type(self.pipe).__name__,
            "family": self.family.name,
            "scheduler": self.scheduler_name,
            **self.options,
        }
        if self.device.startswith("cuda"):
            facts["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
        return facts

    def generate(self, jobs: Sequence[Any]) -> list[GeneratedImage]:
        """Images for jobs that share settings, in their order. A batch that mixes jobs with and
        without a negative prompt is two pipeline calls (one call cannot mix them). An exception
        fails the whole batch; the engine then retries its jobs one at a time."""
        by_job = {id(image.job): image for group in negative_groups(jobs) for image in self._generate(group)}
        return [by_job[id(job)] for job in jobs]

    def _batch(self, jobs: Sequence[Any]) -> list[Any]:
        """A compiled denoiser's jobs: padded to the size of the first batch of their shape
        (the padding's images are dropped), so a short last batch does not recompile."""
        if not self.compiled:
            return list(jobs)
        first = jobs[0]
        shape = (first.width, first.height, first.negative_prompt is None, first.values.get("max_sequence_length"))
        size = self.batch_shapes.setdefault(shape, len(jobs))
        return padded(list(jobs), size) if len(jobs) < size else list(jobs)

    def _generate(self, jobs: Sequence[Any]) -> list[GeneratedImage]:
        import torch

        first = jobs[0]
        batch = self._batch(jobs)
        self.pipe.scheduler = self.schedulers.get(first.scheduler, first.scheduler_options)
        # One CPU generator per image: the pipeline draws each image's initial noise (and an
        # ancestral scheduler its per-step noise) from the image's own seed, so an image is
        # the same alone or in a batch, and the same as plain diffusers gives for its seed.
        generators = [torch.Generator("cpu").manual_seed(j.seed) for j in batch]
        if hasattr(self.pipe.scheduler, "noise_sampler_seed"):  # DPMSolverSDEScheduler's Brownian tree
            self.pipe.scheduler.noise_sampler_seed = [j.seed for j in batch]
        apply_lora_set(self.pipe, first.values.get("lora"))  # genbatch.lora: the batch's LoRA set, or none
        call = call_kwargs(self.family, self.pipe, batch, generators)
        skip = clip_skip_kwargs(self.pipe, first.clip_skip)
        with torch.inference_mode():
            if self.embeddings is not None:  # genbatch.prompt_embeds: each distinct input encoded once
                call = self.embeddings.call(self.pipe, self.family.name, batch, call, skip.get("clip_skip"))
            else:
                texts: dict[str, Any] = {n: call.pop(n) for n in ("prompt", "negative_prompt") if n in call}
                call.update(weighted_call(self.pipe, batch, texts))  # genbatch.prompt_weighting
            out = self.pipe(**call, **skip)
        pixels, errors = pixels_of(out.images[: len(jobs)])
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
        if self.embeddings is not None:
            self.embeddings.clear()
        self.release_memory()


def pixels_of(images: Any) -> tuple[list[Any], list[str | None]]:
    """uint8 pixels (and each image's error) of a pipeline's ``output_type="pt"`` images: made
    on the accelerator that holds them; on the CPU by numpy (there torch's strided copies are
    slower), from the array diffusers' own ``output_type="np"`` gives."""
    import torch

    if not isinstance(images, torch.Tensor):  # a pipeline that ignores output_type: numpy, or PIL images
        array = np.asarray(images)
        return to_uint8(array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array)
    if images.device.type != "cpu":
        return tensor_to_uint8(images)
    return to_uint8(images.permute(0, 2, 3, 1).float().numpy())


def place(pipe: Any, device: str, offload: str) -> None:
    """Move the pipeline to ``device``, or let diffusers move each model there when it runs
    (``model``: one component at a time; ``sequential``: one layer at a time, slowest, least memory)."""
    if offload == "none" or device == "cpu":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
