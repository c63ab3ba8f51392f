"""The speed options of the torch backend that depend on a model, a device or an installed
package: step caching (``--cache``), weight quantization (``--quantize``), regional compilation
(``--compile regional``) and attention backends (``--attention``).

Each is checked here before any model loads, from a model folder's ``model_index.json`` (its
denoiser class), the device and the installed packages, with a message that names what would
be accepted; the torch backend applies them (genbatch.backends.fast_paths). diffusers and
torch are imported only when a check needs them.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from pathlib import Path
from typing import Any

CACHES = ("first-block", "taylorseer", "magcache", "faster")
# The caches that take a threshold, with the one a job gets where none is given (diffusers'
# defaults); TaylorSeer and FasterCache take none.
CACHE_THRESHOLDS = {"first-block": 0.05, "magcache": 0.06}
# MagCache skips steps by a model's calibrated magnitude ratios; diffusers ships them for Flux.1.
MAG_RATIOS = {"FluxTransformer2DModel": "FLUX_MAG_RATIOS"}
# The caches that keep state per denoiser call (the pipeline must mark its calls), and those
# that hook whole transformer blocks (diffusers must know the block's inputs and outputs).
STATEFUL_CACHES = ("first-block", "taylorseer", "magcache")
BLOCK_CACHES = ("first-block", "magcache")
# FasterCache reuses attention outputs from the denoiser's previous call: only pipelines that
# call it once a step (guidance-distilled; genbatch gives Flux.1 no negative prompt, so no true CFG).
ONE_CALL_A_STEP = ("FluxPipeline", "Flux2Pipeline")
QUANTIZATIONS = ("fp8", "int8", "int4", "nf4")
TORCHAO_QUANTIZATIONS = ("fp8", "int8", "int4")
SPEED_EXTRA = "pip install 'genbatch[speed]'"
# The attention backends that run on a CPU (the others are CUDA kernels).
CPU_ATTENTION = ("sdpa", "native", "_native_math", "flex")


def denoiser(path: Path) -> tuple[str, Any]:
    """A model folder's denoiser component ("transformer" or "unet") and its diffusers class
    (None where the folder names none diffusers has)."""
    from genbatch.pipelines.families import model_index

    index = model_index(path)
    for part in ("transformer", "unet"):
        entry = index.get(part)
        if isinstance(entry, list) and len(entry) == 2 and entry[1]:
            return part, _diffusers_class(str(entry[1]))
    return "denoiser", None


def _diffusers_class(name: str) -> Any:
    import diffusers

    found = getattr(diffusers, name, None)
    return found if inspect.isclass(found) else None


def _who(path: Path, part: str, cls: Any) -> str:
    """ "SD 1.x/2.x's unet (UNet2DConditionModel)", for messages."""
    from genbatch.pipelines.families import folder_family

    family = folder_family(path)
    owner = f"{family.title}'s {part}" if family is not None else f"{Path(path).name}'s {part}"
    return f"{owner} ({cls.__name__})" if cls is not None else owner


# --- --cache ---------------------------------------------------------------------------------


def cache_refusal(pipeline: str, cls: Any, cache: str) -> str | None:
    """Why a pipeline class with this denoiser class cannot run ``cache``, or None. Measured on
    the tiny builds of every family: a cache runs where all of these hold."""
    from diffusers.models.cache_utils import CacheMixin

    if not (inspect.isclass(cls) and issubclass(cls, CacheMixin)):
        return "diffusers gives its step caches to some transformer models only"
    if cache == "magcache" and cls.__name__ not in MAG_RATIOS:
        return "MagCache needs a model's calibrated magnitude ratios, which diffusers has for Flux.1 only"
    if cache in STATEFUL_CACHES and not _marks_calls(pipeline):
        return f"{pipeline} does not tell diffusers' cache hooks which denoiser call they are in (cache_context)"
    unknown = _unknown_blocks(cls) if cache in BLOCK_CACHES else []
    if unknown:
        return f"its blocks ({', '.join(unknown)}) are not among those diffusers' {cache} cache knows"
    if cache == "faster" and pipeline not in ONE_CALL_A_STEP:
        return (
            "FasterCache reuses attention outputs from one denoiser call to the next, and this pipeline "
            "may call its denoiser twice a step for guidance, which would mix the two"
        )
    return None


def cache_problem(path: Path, cache: str) -> str | None:
    """Why a model cannot run with ``cache``, or None."""
    from genbatch.pipelines.families import pipeline_class

    part, cls = denoiser(path)
    why = cache_refusal(pipeline_class(path), cls, cache)
    if why is None:
        return None
    taking = ", ".join(families_taking(cache)) or "none of genbatch's families"
    return f"{_who(path, part, cls)} takes no --cache {cache} ({why}; models that take it: {taking})"


@functools.lru_cache(maxsize=8)
def families_taking(cache: str) -> tuple[str, ...]:
    """The families with a pipeline that takes ``cache`` (and which, where not all do), for messages."""
    from genbatch.pipelines.families import FAMILIES

    found = []
    for family in FAMILIES:
        taking = [p for p in family.pipelines if cache_refusal(p, _pipeline_denoiser(p), cache) is None]
        if taking:
            found.append(
                family.title if len(taking) == len(family.pipelines) else f"{family.title} ({', '.join(taking)})"
            )
    return tuple(found)


def _marks_calls(pipeline: str) -> bool:
    """Whether a pipeline's call wraps each denoiser call in ``cache_context``, which the caches
    that keep state per call (cond, uncond) need."""
    cls = _diffusers_class(pipeline)
    try:
        return "cache_context(" in inspect.getsource(cls.__call__)
    except (OSError, TypeError, AttributeError):
        return False


def _unknown_blocks(cls: Any) -> list[str]:
    """The repeated block classes of a denoiser that diffusers' block caches cannot hook (they
    need each block's inputs and outputs by name); [] where diffusers does not say."""
    try:
        from diffusers.hooks._helpers import TransformerBlockRegistry

        TransformerBlockRegistry._register()
        known = {block.__name__ for block in TransformerBlockRegistry._registry}
    except (ImportError, AttributeError):
        return []
    return [name for name in getattr(cls, "_repeated_blocks", None) or () if name not in known]


def _pipeline_denoiser(pipeline: str) -> Any:
    """The denoiser class a diffusers pipeline class is declared with (its ``transformer`` or
    ``unet`` argument), or None."""
    cls = _diffusers_class(pipeline)
    if cls is None:
        return None
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return None
    for part in ("transformer", "unet"):
        if part in parameters:
            annotation = parameters[part].annotation
            return _diffusers_class(annotation) if isinstance(annotation, str) else annotation
    return None


# --- --quantize ------------------------------------------------------------------------------


def quantize_problem(quantize: str | None, device: str, dtype: str) -> str | None:
    """Why ``--quantize`` cannot run on this device and dtype with the installed packages, or None."""
    if not quantize:
        return None
    here = "--quantize int8 runs here" if importlib.util.find_spec("torchao") else f"{SPEED_EXTRA} for int8"
    if quantize in TORCHAO_QUANTIZATIONS and importlib.util.find_spec("torchao") is None:
        return f"--quantize {quantize} needs torchao, which is not installed here: {SPEED_EXTRA}"
    cuda = device.startswith("cuda")
    if quantize == "fp8":
        if not cuda:
            return f"--quantize fp8 runs on a CUDA GPU of compute capability 8.9 or newer, not on {device}; {here}"
        import torch

        major, minor = torch.cuda.get_device_capability(torch.device(device))
        if (major, minor) < (8, 9):
            return (
                f"--quantize fp8 needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper); "
                f"{device} is {major}.{minor}; --quantize int8 runs here"
            )
    if quantize == "int4":
        if not cuda:
            return f"--quantize int4 runs on a CUDA GPU (torch's int4 kernels), not on {device}; {here}"
        if dtype != "bf16":
            return "--quantize int4 runs in bf16 (torch's int4 kernels take no other); add --dtype bf16"
    if quantize == "nf4":
        if importlib.util.find_spec("bitsandbytes") is None:
            return f"--quantize nf4 needs bitsandbytes, which is not installed here: pip install bitsandbytes; {here}"
        if not cuda:
            return f"--quantize nf4 runs on a CUDA GPU (bitsandbytes), not on {device}; {here}"
    return None


def nf4_problem(model: Any) -> str | None:
    """nf4 is applied as a diffusers folder loads (bitsandbytes), or to a released architecture
    with random weights as it is built; a single file is not loaded that way."""
    if model.checkpoint is not None:
        return f"--quantize nf4 quantizes a diffusers model folder as it loads; {model.name} is not one"
    return None


# --- --compile regional ----------------------------------------------------------------------


def regional_problem(path: Path) -> str | None:
    """Why ``--compile regional`` cannot compile a model's denoiser block by block, or None."""
    part, cls = denoiser(path)
    if getattr(cls, "_repeated_blocks", None):
        return None
    return (
        f"--compile regional: {_who(path, part, cls)} names no repeated blocks to compile one by one; "
        f"use --compile default (the whole {part})"
    )


# --- --attention -----------------------------------------------------------------------------


def attention_backends(device: str) -> list[str]:
    """The ``--attention`` names that run here: sdpa, and each diffusers attention backend whose
    package is installed (the CUDA kernels only on a CUDA device)."""
    names = ["sdpa"]
    for name in _diffusers_backends():
        if (device.startswith("cuda") or name in CPU_ATTENTION) and _backend_missing(name) is None:
            names.append(name)
    return names


def attention_problem(name: str, device: str) -> str | None:
    """Why ``--attention name`` cannot run here, or None."""
    if name == "sdpa":
        return None
    accepted = attention_backends(device)
    if name in accepted:
        return None
    if name not in _diffusers_backends():
        why = f"diffusers {_diffusers_version()} has no attention backend of that name"
    else:
        why = _backend_missing(name) or f"it is a CUDA kernel and this run is on {device}"
    return f"--attention {name}: {why}; accepted here: {', '.join(accepted)}"


def _diffusers_backends() -> list[str]:
    try:
        from diffusers.models.attention_dispatch import AttentionBackendName
    except ImportError:  # a diffusers without attention backends
        return []
    return [backend.value for backend in AttentionBackendName]


def _backend_missing(name: str) -> str | None:
    """What diffusers says a backend lacks here (a package, a version), or None."""
    try:
        from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements
    except ImportError:
        return None
    try:
        _check_attention_backend_requirements(AttentionBackendName(name))
    except (RuntimeError, ValueError) as err:
        return str(err).rstrip(".")
    return None


def _diffusers_version() -> str:
    import diffusers

    return str(diffusers.__version__)


def run_problem(
    models: list[Any], device: str, dtype: str, *, quantize: str | None, compile: str | None, attention: str
) -> str | None:
    """Why a run's speed options cannot run on its models, device and installed packages (the
    first reason), or None: ``--quantize``, ``--compile regional`` and ``--attention``."""
    found = quantize_problem(quantize, device, dtype) or attention_problem(attention, device)
    for model in models:
        if found:
            break
        if quantize == "nf4":
            found = nf4_problem(model)
        if compile == "regional":
            found = found or regional_problem(model.path)
    return found


# --- --speed fast ----------------------------------------------------------------------------

SPEEDS = ("exact", "fast")
# The fast preset's first-block threshold. On the tiny Flux at 28 steps, on a held-out prompt set
# (tests/test_speed_preset.py): 0.05 (diffusers' default) and 0.08 skip no step; 0.12 keeps the
# images at 73 dB of exact mode; 0.2 at 62 dB. Real models skip more at the same threshold:
# measure on your own prompts with genbatch compare.
FAST_CACHE_THRESHOLD = 0.12


def fast_settings(paths: list[Path], device: str, dtype: str) -> tuple[dict[str, Any], list[str]]:
    """What ``--speed fast`` turns on for these models on this device, and what it leaves off
    and why: the first step cache every model takes (first-block at FAST_CACHE_THRESHOLD, else
    TaylorSeer), fp8 weights where the GPU has fp8 kernels (int8 weight-only saves memory but
    is no faster), and regional compilation on a CUDA GPU. Each is a setting of its own option
    (--cache, --cache-threshold, --quantize, --compile), recorded as that option would be."""
    settings: dict[str, Any] = {}
    left_off: list[str] = []
    for cache in ("first-block", "taylorseer"):
        if all(cache_problem(path, cache) is None for path in paths):
            settings["cache"] = cache
            if cache in CACHE_THRESHOLDS:
                settings["cache_threshold"] = FAST_CACHE_THRESHOLD
            break
    else:
        left_off.append("no step cache: " + (cache_problem(paths[0], "first-block") or "") if paths else "no model")
    if quantize_problem("fp8", device, dtype) is None:
        settings["quantize"] = "fp8"
    else:
        left_off.append(f"no fp8 weights ({device}: fp8 needs a CUDA GPU of compute capability 8.9+ and torchao)")
    if device.startswith("cuda") and all(regional_problem(path) is None for path in paths):
        settings["compile"] = "regional"
    else:
        left_off.append("no regional compilation (a CUDA GPU and a denoiser with repeated blocks)")
    return settings, left_off
