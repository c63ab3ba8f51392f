"""The torch runtime genbatch's pipelines run on: the device and dtype a run asks for (``auto``
resolved here, once for every caller), and the Hugging Face libraries kept quiet."""

from __future__ import annotations

import logging
import os

from genbatch.errors import GenbatchError

DTYPES = ("fp32", "fp16", "bf16")


# Loggers that warn on import, not on anything a run does: torchao (genbatch[speed]) about its
# CUDA extensions on a CPU build, torch about torchao's enums, diffusers about torchao's tensors,
# transformers about the torchvision its image processors would use.
_IMPORT_NOISE = (
    "torchao",
    "torch.utils._pytree",
    "diffusers.quantizers.torchao.torchao_quantizer",
    "transformers.utils.import_utils",  # image processors that fall back to Pillow without torchvision
)


def quiet_import_noise() -> None:
    """Keep the warnings a library prints as it is imported (with torchao installed) off a run's
    output; before diffusers is first imported. Its errors still show."""
    for name in _IMPORT_NOISE:
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_hf_libraries() -> None:
    """diffusers/transformers print progress bars and advice on every load; in a batch job
    that is noise between our own progress lines. Users can still ask for it via the env."""
    quiet_import_noise()
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
