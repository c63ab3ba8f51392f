"""The narrow seam between genbatch and whatever makes pixels.

A backend resolves ``--device``/``--dtype`` and loads a model, with :class:`BackendOptions`,
into a :class:`LoadedModel`; a loaded model turns a batch of jobs into images. The planner,
engines, writer and ledger see nothing else, so a new runtime is one module. The built-in
backends register through the ``genbatch.backends`` entry-point group (``pyproject.toml``),
the same one a third-party package uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from genbatch.errors import GenbatchError

if TYPE_CHECKING:
    from genbatch.backends.torch_options import TorchOptions
    from genbatch.jobs import Job
    from genbatch.pipelines.model_lookup import ModelRef

ENTRY_POINT_GROUP = "genbatch.backends"


@dataclass
class GeneratedImage:
    """One job's result: pixels (H x W x 3 uint8) or the reason there are none."""

    job: Job
    pixels: np.ndarray | None
    error: str | None = None


@dataclass(frozen=True)
class BackendOptions:
    """How a model is loaded, the same for every model of a run; recorded in run.json.

    ``device`` and ``dtype`` are resolved (never ``auto``); ``scheduler`` replaces the model's
    own when set; ``providers`` are ONNX Runtime's execution providers; ``torch`` holds the torch
    backend's own settings (genbatch.backends.torch_options; None on other backends);
    ``quantize``: the denoiser's weights quantized as it loads (the run's ``--quantize``, which
    its jobs record: genbatch.manifest.fields; None: off)."""

    device: str
    dtype: str
    scheduler: str | None = None
    providers: tuple[str, ...] | None = None
    torch: TorchOptions | None = None
    quantize: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "scheduler": self.scheduler,
            "providers": list(self.providers) if self.providers else None,
            "quantize": self.quantize,
            **(self.torch.as_dict() if self.torch else {}),
        }


class LoadedModel(Protocol):
    """A model loaded on a backend, turning batches of jobs into images."""

    backend: str
    device: str
    dtype: str

    def describe(self) -> dict[str, Any]:
        """Facts for the ledger and run.json (e.g. execution providers)."""

    def generate(self, jobs: Sequence[Job]) -> list[GeneratedImage]:
        """Images for jobs that share a batch group, in the same order. An exception fails the
        whole batch; the engine then retries its jobs one at a time."""

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def resolve(self, device: str, dtype: str) -> tuple[str, str]:
        """``auto`` -> a concrete device and dtype (``fp32``, ``fp16``, ``bf16``)."""

    def load(self, model: ModelRef, options: BackendOptions) -> LoadedModel: ...


# Backends registered in this process (a script or a test); installed ones come from entry points.
_REGISTERED: dict[str, str] = {}


def register_backend(name: str, target: str) -> None:
    """Make ``"module:Class"`` available as ``--backend name`` in this process (a script or
    notebook); installed packages register through the ``genbatch.backends`` entry point."""
    _REGISTERED[name] = target


def _registered() -> dict[str, str]:
    found = {entry.name: entry.value for entry in entry_points(group=ENTRY_POINT_GROUP)}
    if not found:
        raise GenbatchError(
            "genbatch's backends are not registered: install the package "
            "(pip install -e . in a checkout) rather than running it from a bare source tree"
        )
    found.update(_REGISTERED)
    return found


def backend_names() -> list[str]:
    return sorted(_registered())


def get_backend(name: str) -> Backend:
    target = _registered().get(name)
    if target is None:
        raise GenbatchError(f"unknown backend {name!r}; available: {', '.join(backend_names())}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise GenbatchError(f"backend {name!r} needs a package that is not installed: {err.name}") from None
    return getattr(module, attr)()


NAN_ERROR = "the image contains NaN or infinite values (try --dtype fp32)"
BLACK_ERROR = "the image is all black (a safety checker, or a numerical failure)"


def tensor_to_uint8(images: Any) -> tuple[list[np.ndarray | None], list[str | None]]:
    """:func:`to_uint8` of a pipeline's ``output_type="pt"`` images (N x 3 x H x W in [0, 1]),
    done where they are: on a GPU the NaN and black checks and the rounding run there and one
    uint8 array crosses to the host, a quarter of the float32 bytes, with no pass over the
    pixels on the thread that feeds the GPU. The same float32 arithmetic as :func:`to_uint8`
    (clip, * 255, round half to even), so the same bytes."""
    import torch

    with torch.inference_mode():
        floats = images.float()
        finite = torch.isfinite(floats).flatten(1).all(1)
        rounded = (floats.clamp(0.0, 1.0) * 255.0).round()
        lit = rounded.flatten(1).amax(1) > 0  # on the floats: every backend (MPS too) reduces those
        pixels_all = rounded.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    pixels: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for image, ok, shows in zip(pixels_all, finite.tolist(), lit.tolist()):
        error = None if ok and shows else NAN_ERROR if not ok else BLACK_ERROR
        pixels.append(image if error is None else None)
        errors.append(error)
    return pixels, errors


def to_uint8(images: np.ndarray) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Float images in [0, 1] (N x H x W x 3) -> uint8, flagging NaN and all-black ones.

    A NaN or all-black image is a failure of that job (fp16 overflow, a safety checker),
    never a success written to disk.
    """
    pixels: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for image in images:
        if not np.isfinite(image).all():
            pixels.append(None)
            errors.append(NAN_ERROR)
            continue
        as_uint8 = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        if as_uint8.max() == 0:
            pixels.append(None)
            errors.append(BLACK_ERROR)
            continue
        pixels.append(as_uint8)
        errors.append(None)
    return pixels, errors
