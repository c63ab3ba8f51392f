"""ONNX Runtime backend: runs a folder written by ``genbatch export --to onnx``.

Why a denoising loop of genbatch's own instead of a ready-made ONNX pipeline: optimum-onnx
0.1.0 pins transformers < 4.58 (a downgrade for everyone), and diffusers'
``OnnxStableDiffusionPipeline`` is deprecated (removed in diffusers 0.43) and needs
``provider_options`` to load at all. The loop below is ~40 lines, reuses diffusers'
schedulers and the pipeline's CLIP tokenizer, and follows ``StableDiffusionPipeline``
step for step (tokenizer padding, classifier-free guidance, ``init_noise_sigma``,
``scale_model_input``, ``step``, VAE scaling, output range), so with the same initial
latents (:func:`genbatch.backends.latents.initial_latents`) a seed gives the same image on both
backends: fp32 exports agree with torch to within one pixel level (uint8), and an image
does not depend on the batch it ran in.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genbatch.backends.base import BackendOptions, GeneratedImage, to_uint8
from genbatch.backends.latents import initial_latents
from genbatch.backends.onnx_runtime import choose_providers, onnxruntime, open_sessions
from genbatch.errors import GenbatchError, ModelError
from genbatch.pipelines.families import read_defaults
from genbatch.pipelines.model_files import EXPORT_INFO, is_onnx_export, read_json, vae_scale_factor
from genbatch.pipelines.model_lookup import ModelRef
from genbatch.pipelines.samplers import SchedulerCache

DTYPES = ("fp32", "fp16")


class OnnxBackend:
    name = "onnx"

    def resolve(self, device: str, dtype: str) -> tuple[str, str]:
        """auto -> cuda when ONNX Runtime has CUDA, else cpu. The precision of an export is
        fixed when it is exported, so dtype stays ``auto`` unless the user named one (which
        :meth:`load` then checks against the export)."""
        device = (device or "auto").lower()
        available = onnxruntime().get_available_providers()
        has_cuda = "CUDAExecutionProvider" in available
        if device == "auto":
            device = "cuda" if has_cuda else "cpu"
        elif device.startswith("cuda"):
            index = device.partition(":")[2]
            if not has_cuda:
                raise GenbatchError(
                    f"--device {device}: this onnxruntime has no CUDA execution provider "
                    f"(providers: {', '.join(available)}); install 'genbatch[gpu]' or use --device cpu"
                )
            if index and not index.isdigit():
                raise GenbatchError(f"--device {device!r}: expected cuda or cuda:N")
        elif device != "cpu":
            raise GenbatchError(f"--device {device!r}: the onnx backend runs on auto, cpu, cuda or cuda:N")
        dtype = (dtype or "auto").lower()
        if dtype != "auto" and dtype not in DTYPES:
            raise GenbatchError(
                f"--dtype {dtype!r}: ONNX exports are fp32 or fp16 (chosen at export: genbatch export --to onnx --fp16)"
            )
        return device, dtype

    def load(self, model: ModelRef, options: BackendOptions) -> OnnxGenerator:
        if model.checkpoint is not None or model.vae is not None:
            raise ModelError(
                f"{model.name}: a single-file checkpoint or --vae runs on --backend torch; "
                "for onnx, export a diffusers folder (genbatch export --to onnx)"
            )
        return OnnxGenerator(
            model.path,
            name=model.name,
            device=options.device,
            dtype=options.dtype,
            scheduler=options.scheduler,
            providers=list(options.providers) if options.providers else None,
        )


def _numpy_type(onnx_type: str) -> Any:
    return {"tensor(float16)": np.float16, "tensor(int32)": np.int32, "tensor(int64)": np.int64}.get(
        onnx_type, np.float32
    )


def _export_precision(path: Path, name: str, dtype: str) -> str:
    """fp32 or fp16, as the export at ``path`` was made; refused if it is no ONNX export or
    ``--dtype`` asks for the other."""
    if not is_onnx_export(path):
        raise ModelError(
            f"{name} ({path}) is not an ONNX export (no unet/model.onnx); export it first: "
            f"genbatch export --to onnx --model {name}"
        )
    info = read_json(path / EXPORT_INFO)
    exported = "fp16" if info.get("fp16") else "fp32"
    if dtype not in ("auto", exported):
        raise ModelError(
            f"{name} is an {exported} export; --dtype {dtype} needs another export "
            f"(genbatch export --to onnx{' --fp16' if dtype == 'fp16' else ''}), or leave --dtype auto"
        )
    return exported


class OnnxGenerator:
    backend = "onnx"

    def __init__(
        self,
        path: Path,
        *,
        name: str | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        scheduler: str | None = None,
        providers: list[str] | None = None,
    ):
        from genbatch.pipelines.samplers import check_own_timesteps, swap_scheduler
        from genbatch.pipelines.torch_runtime import quiet_hf_libraries

        ort = onnxruntime()
        path = Path(path)
        name = name or path.name
        exported = _export_precision(path, name, dtype)
        # SDXL: a second text encoder, pooled embeddings and size conditioning (time ids)
        self.xl = (path / "text_encoder_2" / "model.onnx").exists()
        self.force_zeros = bool(read_json(path / "model_index.json").get("force_zeros_for_empty_prompt", True))
        quiet_hf_libraries()
        import diffusers
        from transformers import CLIPTokenizer

        self.path, self.name, self.device, self.dtype = path, name, device, exported
        self.device_id = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
        parts = ("text_encoder", "unet", "vae_decoder") + (("text_encoder_2",) if self.xl else ())
        wanted = choose_providers(device.partition(":")[0], providers)
        self.sessions = open_sessions(ort, path, parts, wanted, device_id=self.device_id, fp16=exported == "fp16")
        self.providers = self.sessions["unet"].get_providers()
        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
            self.tokenizer_2 = CLIPTokenizer.from_pretrained(path / "tokenizer_2") if self.xl else None
            config = read_json(path / "scheduler" / "scheduler_config.json")
            scheduler_cls = getattr(diffusers, config.get("_class_name", ""), None)
            if scheduler_cls is None:
                raise ModelError(f"{path}/scheduler: unknown scheduler {config.get('_class_name')!r}")
            own = scheduler_cls.from_config(config)
            check_own_timesteps(own, scheduler, read_defaults(path), path)
            self.scheduler = swap_scheduler(own, scheduler)
            self.schedulers = SchedulerCache(self.scheduler)
        except GenbatchError:
            raise
        except Exception as err:
            raise ModelError(f"cannot load the tokenizer or scheduler of {path}: {err}") from err
        self._read_sizes()

    def _read_sizes(self) -> None:
        """The latent and input sizes and types the loop needs, from the configs and sessions."""
        vae = read_json(self.path / "vae_decoder" / "config.json")
        unet = read_json(self.path / "unet" / "config.json")
        self.vae_scale_factor = vae_scale_factor(vae)
        self.scaling_factor = float(vae.get("scaling_factor", 0.18215))
        self.in_channels = int(unet.get("in_channels") or self.sessions["unet"].get_inputs()[0].shape[1])
        self.types = {part: {i.name: _numpy_type(i.type) for i in s.get_inputs()} for part, s in self.sessions.items()}
        self.unet_output = self.sessions["unet"].get_outputs()[0].name
        # Where the UNet's constant input lives between steps (None: passed from the CPU each step).
        self.io_device = "cuda" if self.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else None

    def describe(self) -> dict[str, Any]:
        info = read_json(self.path / EXPORT_INFO)
        return {
            "providers": list(self.providers),
            "pipeline": "genbatch ONNX Runtime loop",
            "scheduler": type(self.scheduler).__name__,
            "export_dtype": self.dtype,
            "io_binding": self.io_device is not None,
            "source_model": info.get("source_model"),
        }

    # --- generating -------------------------------------------------------------------------

    def generate(self, jobs: Sequence[Any]) -> list[GeneratedImage]:
        first = jobs[0]
        if getattr(first, "clip_skip", None):
            raise ModelError(
                "clip_skip: the onnx backend's text encoder gives only its last layer; "
                "use --backend torch for clip skip"
            )
        self.scheduler = self.schedulers.get(first.scheduler, first.scheduler_options)
        images = self.images(
            [j.prompt for j in jobs],
            [j.negative_prompt for j in jobs],
            [j.seed for j in jobs],
            steps=first.steps,
            guidance_scale=first.guidance_scale,
            height=first.height,
            width=first.width,
            timesteps=first.timesteps,
        )
        pixels, errors = to_uint8(images)
        return [GeneratedImage(job, image, error) for job, image, error in zip(jobs, pixels, errors)]

    def images(
        self,
        prompts: list[str],
        negative_prompts: list[str],
        seeds: list[int],
        *,
        steps: int,
        guidance_scale: float,
        height: int,
        width: int,
        timesteps: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Float images in [0, 1], N x H x W x 3, as ``StableDiffusionPipeline`` makes them
        (``timesteps``: the model's own list, which replaces the scheduler's spacing of ``steps``)."""
        import torch

        guided = guidance_scale > 1.0
        # 1. Encode the prompts (negative first, as diffusers concatenates them)
        extra: dict[str, np.ndarray] = {}
        if self.xl:
            embeddings, extra = self._encode_xl(list(prompts), list(negative_prompts), guided, height, width)
        else:
            embeddings = self._encode(list(negative_prompts) + list(prompts) if guided else list(prompts))
        # 2. Timesteps and the per-image initial latents, scaled by the scheduler
        scheduler = self.scheduler
        if timesteps:
            scheduler.set_timesteps(timesteps=list(timesteps), device="cpu")
        else:
            scheduler.set_timesteps(steps, device="cpu")
        latents = (
            initial_latents(seeds, self.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
            * scheduler.init_noise_sigma
        )
        # 3. Per-image CPU generators for schedulers that draw noise at each step
        step_kwargs: dict[str, Any] = {}
        accepted = inspect.signature(scheduler.step).parameters
        if "eta" in accepted:
            step_kwargs["eta"] = 0.0
        if "generator" in accepted:
            step_kwargs["generator"] = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        # 4. Denoising loop
        unet = _UnetRunner(self, embeddings, extra)
        for t in scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            noise = torch.from_numpy(unet(model_input.numpy(), float(t)))
            if guided:
                noise_uncond, noise_text = noise.chunk(2)
                noise = noise_uncond + guidance_scale * (noise_text - noise_uncond)
            latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
        # 5. Decode
        decoded = self._run("vae_decoder", {"latent_sample": (latents / self.scaling_factor).numpy()})[0]
        decoded = np.clip(decoded.astype(np.float32) / 2 + 0.5, 0.0, 1.0)
        return decoded.transpose(0, 2, 3, 1)

    def _encode(self, prompts: list[str]) -> np.ndarray:
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="np",
        ).input_ids
        return self._run("text_encoder", {"input_ids": ids})[0]

    def _encode_xl(
        self, prompts: list[str], negatives: list[str | None], guided: bool, height: int, width: int
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """As ``StableDiffusionXLPipeline.encode_prompt``: both encoders' penultimate hidden
        states side by side, the second's pooled projection, and the size conditioning
        (original size, crop 0,0, target size). No negative prompt with
        ``force_zeros_for_empty_prompt``: zeros instead of the encoded ``""``."""

        def encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
            hidden: list[np.ndarray] = []
            pooled = np.zeros(0)
            tokenizers: tuple[tuple[str, Any], ...] = (
                ("text_encoder", self.tokenizer),
                ("text_encoder_2", self.tokenizer_2),
            )
            for part, tokenizer in tokenizers:
                ids = tokenizer(
                    texts,
                    padding="max_length",
                    max_length=tokenizer.model_max_length,
                    truncation=True,
                    return_tensors="np",
                ).input_ids
                states, pooled = self._run(part, {"input_ids": ids})[:2]
                hidden.append(states)
            return np.concatenate(hidden, axis=-1), pooled

        embeddings, pooled = encode(prompts)
        time_ids = np.tile(np.array([[height, width, 0, 0, height, width]], dtype=np.float32), (len(prompts), 1))
        if guided:
            if all(n is None for n in negatives) and self.force_zeros:
                negative, negative_pooled = np.zeros_like(embeddings), np.zeros_like(pooled)
            else:
                negative, negative_pooled = encode([n or "" for n in negatives])
            embeddings = np.concatenate([negative, embeddings])
            pooled = np.concatenate([negative_pooled, pooled])
            time_ids = np.concatenate([time_ids, time_ids])
        return embeddings, {"text_embeds": pooled, "time_ids": time_ids}

    def _run(self, part: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        types = self.types[part]
        outputs = self.sessions[part].run(None, {k: v.astype(types[k], copy=False) for k, v in feeds.items()})
        return [o.astype(np.float32, copy=False) if o.dtype == np.float16 else o for o in outputs]

    def close(self) -> None:
        self.sessions = {}


class _UnetRunner:
    """One UNet call per step. On CUDA the prompt embeddings go to the GPU once per batch
    (IO binding) instead of once per step; the latents come back to the CPU for the
    scheduler, which is a diffusers (torch) object."""

    def __init__(self, generator: OnnxGenerator, embeddings: np.ndarray, extra: dict[str, np.ndarray] | None = None):
        self.g = generator
        self.session = generator.sessions["unet"]
        self.types = generator.types["unet"]
        self.embeddings = embeddings.astype(self.types["encoder_hidden_states"], copy=False)
        # SDXL's pooled embeddings and time ids: constant through the loop, like the embeddings
        self.extra = {k: v.astype(self.types[k], copy=False) for k, v in (extra or {}).items()}
        self.bound = None
        if generator.io_device:
            import onnxruntime as ort

            self.bound = ort.OrtValue.ortvalue_from_numpy(self.embeddings, generator.io_device, generator.device_id)

    def __call__(self, sample: np.ndarray, t: float) -> np.ndarray:
        sample = sample.astype(self.types["sample"], copy=False)
        timestep = np.full((sample.shape[0],), t, dtype=self.types["timestep"])
        if self.bound is None:
            out = self.session.run(
                None, {"sample": sample, "timestep": timestep, "encoder_hidden_states": self.embeddings, **self.extra}
            )[0]
        else:
            binding = self.session.io_binding()
            binding.bind_cpu_input("sample", sample)
            binding.bind_cpu_input("timestep", timestep)
            binding.bind_ortvalue_input("encoder_hidden_states", self.bound)
            for name, value in self.extra.items():
                binding.bind_cpu_input(name, value)
            binding.bind_output(self.g.unet_output, self.g.io_device, self.g.device_id)
            self.session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        return out.astype(np.float32, copy=False)
