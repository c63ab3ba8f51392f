"""Fast paths of the torch backend, each behind an option with a safe default and recorded
in run.json: the attention kernel, channels-last memory format, ``torch.compile``, and the two
that change pixels and are therefore also in each image's record and job key: a step cache
and quantized weights. Which models, devices and packages take each is checked before any
model loads (genbatch.pipelines.speed).

- ``attention``: ``sdpa`` (the default) makes explicit what diffusers already does on torch 2:
  UNet and VAE attention through ``AttnProcessor2_0`` (``F.scaled_dot_product_attention``);
  transformer families keep their own SDPA processors. Another name (``flash``,
  ``_native_cudnn``, ``sage``...) is passed to diffusers' ``set_attention_backend`` on models
  that have it.
- ``channels_last``: ``auto`` (the default) is off: measured on an H200, SD-1.5 in fp16 at
  batch 16 ran 16 % slower with the UNet channels-last and 18 % with the VAE too
  (``benchmarks/fast_paths_gpu.py``); ``on`` turns it on for a UNet and its VAE.
- ``compile``: off by default; a mode (``default``, ``max-autotune``, ``reduce-overhead``,
  ``max-autotune-no-cudagraphs``) compiles the denoiser with fixed shapes (``dynamic=False``).
  The backend pads a short batch to the size of the first batch of its shape and drops the
  padding's images, so the last batch of a bucket never recompiles. ``reduce-overhead`` and
  ``max-autotune`` capture CUDA graphs on a GPU (fixed shapes make them valid for every
  family; offload hooks do not mix with them). ``regional`` compiles only the denoiser's repeated
  blocks (diffusers' ``compile_repeated_blocks``): the same blocks compile once, in a fraction of
  the time. The first batch of each shape runs once untimed first (``TorchGenerator.warm_up``), so that
  compiling and capturing CUDA graphs are not counted as generation time.
- ``quantize`` (a run's ``--quantize``): the denoiser's weights, after it loads: ``int8``
  (torchao int8 weight-only: CPU and GPU), ``fp8`` (torchao fp8 weights and activations, per
  row: CUDA compute capability 8.9+), ``int4`` (torchao int4 weight-only, tinygemm: CUDA,
  bf16); ``nf4`` (bitsandbytes) is applied as the folder loads (:func:`load_quantization`).
- ``cache`` (a job's ``cache`` and ``cache_threshold``): one of diffusers' step caches on the
  denoiser (``enable_cache``), switched per batch (:class:`StepCache`).
"""

from __future__ import annotations

from typing import Any

from genbatch.errors import GenbatchError
from genbatch.pipelines.speed import CACHES, MAG_RATIOS

ATTENTION_DEFAULT = "sdpa"
CHANNELS_LAST = ("auto", "on", "off")
COMPILE_MODES = ("default", "max-autotune", "reduce-overhead", "max-autotune-no-cudagraphs", "regional")


def denoiser(pipe: Any) -> Any:
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def set_attention(pipe: Any, name: str | None) -> str:
    """Apply ``--attention``; returns the processor (or backend) names in use, for run.json."""
    name = name or ATTENTION_DEFAULT
    model = denoiser(pipe)
    if name == ATTENTION_DEFAULT:
        if getattr(pipe, "unet", None) is not None:
            from diffusers.models.attention_processor import AttnProcessor2_0

            for part in (pipe.unet, getattr(pipe, "vae", None)):
                if part is not None and hasattr(part, "set_attn_processor"):
                    part.set_attn_processor(AttnProcessor2_0())
    elif model is None or not hasattr(model, "set_attention_backend"):
        raise GenbatchError(
            f"--attention {name}: {type(pipe).__name__}'s denoiser takes no attention backend; use --attention sdpa"
        )
    else:
        try:
            model.set_attention_backend(name)
        except Exception as err:  # an unknown name, or a kernel that is not installed
            raise GenbatchError(f"--attention {name}: {err}") from None
    processors = getattr(model, "attn_processors", None) or {}
    return ",".join(sorted({type(p).__name__ for p in processors.values()})) or name


def set_channels_last(pipe: Any, value: str | None) -> bool:
    import torch

    value = value or "auto"
    if value not in CHANNELS_LAST:
        raise GenbatchError(f"--channels-last {value!r}: expected {', '.join(CHANNELS_LAST)}")
    unet = getattr(pipe, "unet", None)
    on = value == "on" and unet is not None
    if on:
        for part in (unet, getattr(pipe, "vae", None)):
            if part is not None:
                part.to(memory_format=torch.channels_last)
    return on


def compile_denoiser(pipe: Any, mode: str | None, backend: str = "inductor") -> str | None:
    """``torch.compile`` the pipeline's UNet or transformer in place with fixed shapes."""
    if not mode or mode == "off":
        return None
    if mode not in COMPILE_MODES:
        raise GenbatchError(f"--compile {mode!r}: expected off, {', '.join(COMPILE_MODES)}")
    model = denoiser(pipe)
    if model is None:
        raise GenbatchError(f"--compile: {type(pipe).__name__} has no UNet or transformer to compile")
    if mode == "regional":  # each repeated block compiled once, reused by every block of its class
        # Not fullgraph: diffusers' step caches decide in their block hooks, outside the graph
        # (torch.compiler.disable, data-dependent branches), which fullgraph=True refuses in every
        # batch; a block without a cache is one graph either way.
        model.compile_repeated_blocks(fullgraph=False, dynamic=False, backend=backend)
        return mode
    settings: dict[str, Any] = {"dynamic": False, "fullgraph": False, "backend": backend}
    if backend == "inductor" and mode != "default":
        settings["mode"] = mode
    model.compile(**settings)
    return mode


# --- quantized weights (--quantize) ----------------------------------------------------------


def quantize_denoiser(pipe: Any, kind: str | None) -> str | None:
    """Quantize the denoiser's weights in place with torchao (``int8``, ``fp8``, ``int4``);
    ``nf4`` was applied as the model loaded (:func:`load_quantization`). Returns ``kind``."""
    if kind not in ("int8", "fp8", "int4"):
        return kind
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int4WeightOnlyConfig,
        Int8WeightOnlyConfig,
        PerRow,
        quantize_,
    )

    config = {
        "int8": lambda: Int8WeightOnlyConfig(),
        "fp8": lambda: Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
        "int4": lambda: Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d"),
    }[kind]()
    quantize_(denoiser(pipe), config)
    return kind


def load_quantization(part: str, kind: str | None, torch_dtype: Any) -> Any:
    """``from_pretrained``'s ``quantization_config`` for ``nf4`` (bitsandbytes 4-bit NF4 on the
    denoiser ``part``, computing in the run's dtype), else None."""
    if kind != "nf4":
        return None
    from diffusers.quantizers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": torch_dtype},
        components_to_quantize=[part],
    )


# --- step caches (--cache) -------------------------------------------------------------------


class StepCache:
    """The step cache of a pipeline's denoiser, switched to each batch's own (its jobs'
    ``cache``, ``cache_threshold`` and, for MagCache, ``steps``). Its state is cleared before
    every call, so a call that failed half-way leaves nothing to the next."""

    def __init__(self, pipe: Any):
        self.pipe = pipe
        self.current: tuple[Any, ...] = (None,)

    def use(self, cache: str | None, threshold: float | None, steps: int) -> None:
        model = denoiser(self.pipe)
        setting = (cache, threshold, steps if cache == "magcache" else None)
        if setting != self.current:
            if self.current[0] is not None:
                model.disable_cache()
            self.current = (None,)
            if cache is not None:
                try:
                    model.enable_cache(cache_config(self.pipe, cache, threshold, steps))
                except (ValueError, IndexError, TypeError) as err:  # a model diffusers' hooks cannot take
                    raise GenbatchError(f"--cache {cache}: diffusers cannot apply it to {type(model).__name__}: {err}")
            self.current = setting
        elif cache is not None:
            model._reset_stateful_cache()


def cache_config(pipe: Any, cache: str, threshold: float | None, steps: int) -> Any:
    """diffusers' config of ``cache``: FirstBlockCache and MagCache at ``threshold``; TaylorSeer
    with diffusers' defaults; FasterCache's attention reuse only (its unconditional-branch
    estimate assumes a batch of unconditional then conditional inputs, which not every family
    runs)."""
    from diffusers.hooks import FasterCacheConfig, FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    if cache == "first-block":
        return FirstBlockCacheConfig(threshold=threshold)
    if cache == "taylorseer":
        return TaylorSeerCacheConfig()
    if cache == "magcache":
        from diffusers.hooks import mag_cache

        ratios = getattr(mag_cache, MAG_RATIOS[type(denoiser(pipe)).__name__])
        return MagCacheConfig(threshold=threshold, num_inference_steps=steps, mag_ratios=ratios)
    if cache == "faster":
        return FasterCacheConfig(
            current_timestep_callback=lambda: pipe.current_timestep,
            is_guidance_distilled=True,
            tensor_format="BCHW",
        )
    raise GenbatchError(f"--cache {cache!r}: expected {', '.join(CACHES)} or none")


def padded(jobs: list[Any], size: int) -> list[Any]:
    """``jobs`` with the last one repeated up to ``size`` (a compiled denoiser's fixed batch)."""
    return list(jobs) + [jobs[-1]] * max(0, size - len(jobs))
