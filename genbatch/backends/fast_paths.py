"""GPU fast paths of the torch backend, each behind an option with a safe default and recorded
in run.json: the attention kernel, channels-last memory format and ``torch.compile``.

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
  family; offload hooks do not mix with them).
"""

from __future__ import annotations

from typing import Any

from genbatch.errors import GenbatchError

ATTENTION_DEFAULT = "sdpa"
CHANNELS_LAST = ("auto", "on", "off")
COMPILE_MODES = ("default", "max-autotune", "reduce-overhead", "max-autotune-no-cudagraphs")


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
    settings: dict[str, Any] = {"dynamic": False, "fullgraph": False, "backend": backend}
    if backend == "inductor" and mode != "default":
        settings["mode"] = mode
    model.compile(**settings)
    return mode


def padded(jobs: list[Any], size: int) -> list[Any]:
    """``jobs`` with the last one repeated up to ``size`` (a compiled denoiser's fixed batch)."""
    return list(jobs) + [jobs[-1]] * max(0, size - len(jobs))
