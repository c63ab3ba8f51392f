"""PyTorch backend: diffusers text-to-image pipelines, loaded with ``from_pretrained``.

What differs between families (SD, SDXL, SD3, Flux, PixArt, Sana, the generic path) is
in :mod:`genbatch.pipelines.families`; this module loads, places and calls the pipeline.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from genbatch.backends.base import BackendOptions, GeneratedImage, tensor_to_uint8, to_uint8
from genbatch.backends.fast_paths import (
    StepCache,
    compile_denoiser,
    load_quantization,
    padded,
    quantize_denoiser,
    set_attention,
    set_channels_last,
)
from genbatch.backends.ip_adapter import IpAdapters, ip_adapter_call
from genbatch.backends.prompt_embeds import EmbeddingCache
from genbatch.backends.torch_options import TorchOptions
from genbatch.errors import GenbatchError, ModelError
from genbatch.manifest.a1111 import clip_skip_kwargs
from genbatch.manifest.inputs import opened
from genbatch.pipelines.checkpoints import load_pipeline
from genbatch.pipelines.families import call_groups, call_kwargs, detect
from genbatch.pipelines.image_inputs import (
    controlnet_folder,
    controlnet_of,
    input_arguments,
    input_kind,
    input_mode,
    pipeline_class_for,
)
from genbatch.pipelines.lora import apply_set as apply_lora_set
from genbatch.pipelines.model_files import read_json
from genbatch.pipelines.model_lookup import ModelRef
from genbatch.pipelines.prompt_weighting import weighted_call
from genbatch.pipelines.samplers import SchedulerCache, check_own_timesteps, swap_scheduler
from genbatch.pipelines.speed import denoiser as denoiser_part
from genbatch.pipelines.torch_runtime import quiet_hf_libraries, resolve_dtype, resolve_torch_device, torch_dtype


class TorchBackend:
    name = "torch"

    def resolve(self, device: str, dtype: str) -> tuple[str, str]:
        resolved = resolve_torch_device(device)
        return resolved, resolve_dtype(resolved, dtype)

    def load(self, model: ModelRef, options: BackendOptions) -> TorchGenerator:
        """``options.torch``: the backend's own settings (genbatch.backends.torch_options); None: the defaults."""
        return TorchGenerator(model, options=options)


class TorchGenerator:
    backend = "torch"

    def __init__(self, model: ModelRef, *, options: BackendOptions):
        quiet_hf_libraries()
        settings = options.torch or TorchOptions()
        offload = settings.offload
        family = detect(model.path)  # before loading: a refused pipeline costs no load
        self.device, self.dtype, self.model, self.family = options.device, options.dtype, model, family
        self.options: dict[str, Any] = {
            "offload": offload,
            "vae_tiling": settings.vae_tiling,
            "vae_slicing": settings.vae_slicing,
        }
        self.allow_pickle = settings.allow_pickle
        self.quantize = options.quantize  # one value per run, which every job records (checked per batch)
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
        self.variants: dict[tuple[str, str | None], Any] = {}  # image-to-image, inpainting, ControlNet pipelines
        self.controlnets: dict[str, Any] = {}
        self.ip_adapters = IpAdapters(options.device, torch_dtype(options.dtype))  # genbatch.backends.ip_adapter
        pipe.set_progress_bar_config(disable=True)
        place(pipe, options.device, offload)
        if self.options["vae_tiling"]:
            pipe.vae.enable_tiling()
        if self.options["vae_slicing"]:
            pipe.vae.enable_slicing()
        self.options["quantize"] = quantize_denoiser(pipe, self.quantize)  # before compiling: it compiles the quantized
        self.pipe = pipe
        self._fast_paths(settings)
        self.scheduler_name = type(pipe.scheduler).__name__
        self.gpu_memory = gpu_memory_after_load(self.device)

    def make_pipeline(self, model: ModelRef, dtype: str) -> Any:
        """The diffusers pipeline of ``model``: a folder, or a single file (+ --vae); a released
        architecture with random weights (genbatch.pipelines.architectures) is built on the device."""
        from genbatch.pipelines.architectures import build_pipeline, is_random_architecture

        if is_random_architecture(model.path):
            device = self.device if self.options["offload"] == "none" else "cpu"
            return build_pipeline(model.path, device, dtype, quantize="nf4" if self.quantize == "nf4" else None)
        part = denoiser_part(model.path)[0]
        quantization = load_quantization(part, self.quantize, torch_dtype(dtype))  # nf4: as the folder loads
        return load_pipeline(model, torch_dtype(dtype), allow_pickle=self.allow_pickle, quantization=quantization)

    def _fast_paths(self, settings: TorchOptions) -> None:
        reuse = settings.reuse_embeddings
        self.embeddings = EmbeddingCache() if reuse else None
        self.compiled = compile_denoiser(self.pipe, settings.compile, settings.compile_backend)
        self.batch_shapes: dict[tuple[Any, ...], int] = {}  # a compiled denoiser's batch size per shape
        self.caches = StepCache(self.pipe)  # a batch's own step cache (a manifest column, or --cache)
        self.options.update(
            reuse_embeddings=bool(reuse),
            attention=set_attention(self.pipe, settings.attention),
            channels_last=set_channels_last(self.pipe, settings.channels_last),
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
            peak = torch.cuda.max_memory_allocated(torch.device(self.device))
            facts["gpu_memory_mb"] = {**self.gpu_memory, "generate_peak": round(peak / 2**20)}
        return facts

    def generate(self, jobs: Sequence[Any]) -> list[GeneratedImage]:
        """Images for jobs that share settings, in their order. A batch that mixes jobs with and
        without a negative prompt is two pipeline calls (one call cannot mix them), and a family may
        cut it further (genbatch.pipelines.families.call_groups). An exception
        fails the whole batch; the engine then retries its jobs one at a time."""
        groups = call_groups(self.family, self.pipe, jobs)
        by_job = {id(image.job): image for group in groups for image in self._generate(group)}
        return [by_job[id(job)] for job in jobs]

    def warm_up(self, jobs: Sequence[Any]) -> None:
        """Called by the engine before it times a batch: a compiled denoiser's first batch of a
        shape first runs once, untimed, for WARM_UP_STEPS steps (its images dropped), so that
        compiling and capturing CUDA graphs are not counted as the batch's time. Later batches
        of that shape reuse what it compiled (:meth:`_batch` keeps their size)."""
        if not self.compiled:
            return
        for group in call_groups(self.family, self.pipe, jobs):
            if _shape(group[0]) not in self.batch_shapes:
                self._generate(group, steps=WARM_UP_STEPS)

    def _batch(self, jobs: Sequence[Any]) -> list[Any]:
        """A compiled denoiser's jobs: padded to the size of the first batch of their shape
        (the padding's images are dropped), so a short last batch does not recompile."""
        if not self.compiled:
            return list(jobs)
        size = self.batch_shapes.setdefault(_shape(jobs[0]), len(jobs))
        return padded(list(jobs), size) if len(jobs) < size else list(jobs)

    def _generate(self, jobs: Sequence[Any], steps: int | None = None) -> list[GeneratedImage]:
        """The pipeline call of one group; ``steps``: fewer steps than the jobs ask (a warm-up)."""
        import torch

        first = jobs[0]
        if first.values.get("quantize") != self.quantize:  # the records would not say how the images were made
            raise GenbatchError(
                f"quantize: {self.model.name} was loaded with --quantize {self.quantize or 'none'}, and a job "
                f"asks for {first.values.get('quantize') or 'none'}; a run has one --quantize"
            )
        batch = self._batch(jobs)
        self.caches.use(first.values.get("cache"), first.values.get("cache_threshold"), first.steps)
        self.pipe.scheduler = self.schedulers.get(first.scheduler, first.scheduler_options)
        pipe = self._pipeline_for(first)  # the model's own, or its image-to-image, inpainting, ControlNet one
        # One CPU generator per image: the pipeline draws each image's initial noise (and an
        # ancestral scheduler its per-step noise) from the image's own seed, so an image is
        # the same alone or in a batch, and the same as plain diffusers gives for its seed.
        generators = [torch.Generator("cpu").manual_seed(j.seed) for j in batch]
        if hasattr(self.pipe.scheduler, "noise_sampler_seed"):  # DPMSolverSDEScheduler's Brownian tree
            self.pipe.scheduler.noise_sampler_seed = [j.seed for j in batch]
        apply_lora_set(
            self.pipe, first.values.get("lora"), allow_pickle=self.allow_pickle
        )  # genbatch.pipelines.lora: the batch's LoRA set, or none
        call = call_kwargs(self.family, pipe, batch, generators)
        call.update(input_images(pipe, batch))  # each job's own images, read and fitted (genbatch.manifest.inputs)
        adapter = first.values.get("ip_adapter")  # the batch's IP-Adapter (set only with an ip_adapter_image)
        self.ip_adapters.use([self.pipe, *self.variants.values()], adapter, first.values.get("ip_adapter_scale"))
        own = self.family.hook("images")  # as the pipeline makes one image of them, where a list differs
        if own is not None:
            call = own(pipe, call)
        if steps is not None and "timesteps" not in call and "sigmas" not in call:
            call["num_inference_steps"] = min(steps, call.get("num_inference_steps") or steps)
        skip = clip_skip_kwargs(pipe, first.clip_skip)
        with torch.inference_mode():
            if self.embeddings is not None:  # genbatch.backends.prompt_embeds: each distinct input encoded once
                call = self.embeddings.call(pipe, self.family.name, batch, call, skip.get("clip_skip"))
            else:
                texts: dict[str, Any] = {n: call.pop(n) for n in ("prompt", "negative_prompt") if n in call}
                call.update(weighted_call(pipe, batch, texts))  # genbatch.pipelines.prompt_weighting
            call.pop("ip_adapter_image", None)  # its record: each job's own image is encoded alone
            with ip_adapter_call(pipe, batch, call, adapter) as embeds:  # genbatch.backends.ip_adapter
                out = pipe(**call, **embeds, **skip)
        pixels, errors = pixels_of(out.images[: len(jobs)])
        flagged = getattr(out, "nsfw_content_detected", None) or [False] * len(jobs)
        results = []
        for job, image, error, nsfw in zip(jobs, pixels, errors, flagged):
            if nsfw:
                image, error = None, "the model's safety checker flagged this image"
            results.append(GeneratedImage(job, image, error))
        return results

    def _pipeline_for(self, job: Any) -> Any:
        """The pipeline that makes ``job``: the model's own for a text row (and an edit model's
        image), else the image-to-image, inpainting or ControlNet pipeline diffusers' auto
        pipelines map it to, made once with ``from_pipe`` (the same weights, nothing loaded again)
        and sharing the model's scheduler."""
        kind, controlnet = input_kind(job.values), controlnet_of(job.values)
        base = type(self.pipe).__name__
        if pipeline_class_for(base, kind, controlnet is not None) == base:
            return self.pipe
        key = (kind, controlnet)
        if key not in self.variants:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

            auto = {"text": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image}.get(
                kind, AutoPipelineForInpainting
            )
            extra = {"controlnet": self._controlnet(controlnet)} if controlnet else {}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    variant = auto.from_pipe(self.pipe, **extra)
            except Exception as err:
                raise ModelError(f"{self.model.name}: cannot make its {kind} pipeline: {err}") from err
            variant.set_progress_bar_config(disable=True)
            self.variants[key] = variant
        variant = self.variants[key]
        variant.scheduler = self.pipe.scheduler  # the batch's sampler, set on the model's pipeline
        return variant

    def _controlnet(self, given: str) -> Any:
        """A ControlNet model, loaded once (its class from its config), on the model's device and dtype."""
        if given not in self.controlnets:
            import diffusers

            folder = controlnet_folder(given)
            if folder is None:
                raise ModelError(f"controlnet {given}: no such folder, and no such model in the local cache")
            name = read_json(folder / "config.json").get("_class_name", "ControlNetModel")
            model = getattr(diffusers, name).from_pretrained(folder, torch_dtype=torch_dtype(self.dtype))
            self.controlnets[given] = model.to(self.device) if self.options["offload"] == "none" else model
        return self.controlnets[given]

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


# Steps of a compiled denoiser's warm-up call: the first call compiles, the next records CUDA
# graphs (reduce-overhead, max-autotune), the third replays them.
WARM_UP_STEPS = 3


def input_images(pipe: Any, jobs: Sequence[Any]) -> dict[str, list[Any]]:
    """The call's image arguments for a batch: each job's own files, read again (and checked
    against the sha256 in its key), fitted to its size as its ``resize`` says, one per job."""
    takes = frozenset(inspect.signature(pipe.__call__).parameters)
    arguments = input_arguments(takes, jobs[0].values)
    return {
        argument: [
            opened(job.values[field], job.width, job.height, job.values.get("resize"), input_mode(field))
            for job in jobs
        ]
        for argument, field in arguments.items()
    }


def gpu_memory_after_load(device: str) -> dict[str, int]:
    """On a CUDA device, ``torch.cuda.max_memory_allocated`` while the model loaded and what the
    loaded model holds (MiB); the peak is then reset, so that :meth:`TorchGenerator.describe`,
    called again after the batches, gives the peak while generating (run.json's
    ``backend_facts.gpu_memory_mb``). A quantization applied after a load in the run's dtype
    (torchao; nf4 on a random-weight architecture) peaks at the unquantized size while loading."""
    if not device.startswith("cuda"):
        return {}
    import torch

    where = torch.device(device)
    found = {
        "load_peak": round(torch.cuda.max_memory_allocated(where) / 2**20),
        "loaded": round(torch.cuda.memory_allocated(where) / 2**20),
    }
    torch.cuda.reset_peak_memory_stats(where)
    return found


def _shape(job: Any) -> tuple[Any, ...]:
    """What fixes a compiled denoiser's input shapes, the batch size aside."""
    return (job.width, job.height, job.negative_prompt is None, job.values.get("max_sequence_length"))


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
