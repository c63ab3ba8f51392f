"""The narrow seam between genbatch and whatever makes pixels.

A backend resolves ``--device``/``--dtype`` and loads a model into a :class:`Generator`;
a generator turns a batch of jobs into images. The planner, writer, ledger and engines see
nothing else, so a new runtime is one module. Built-in backends register through the same
``genbatch.backends`` entry-point group a third-party package would use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from ..errors import GenbatchError

if TYPE_CHECKING:
    from ..models import ModelRef
    from ..plan import Job


@dataclass
class GeneratedImage:
    """One job's result: pixels (H x W x 3 uint8) or the reason there are none."""

    job: "Job"
    pixels: np.ndarray | None
    error: str | None = None


class Generator(Protocol):
    backend: str
    device: str
    dtype: str

    def describe(self) -> dict[str, Any]:
        """Facts for the ledger and run.json (e.g. execution providers)."""

    def generate(self, jobs: Sequence["Job"]) -> list[GeneratedImage]:
        """Images for jobs that share a batch group, in the same order."""

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def resolve(self, device: str, dtype: str) -> tuple[str, str]:
        """``auto`` -> a concrete device and dtype (``fp32``, ``fp16``, ``bf16``)."""

    def load(self, model: "ModelRef", *, device: str, dtype: str, scheduler: str | None) -> Generator: ...


_BUILTIN = {
    "torch": "genbatch.backends.torch_backend:TorchBackend",
    "onnx": "genbatch.backends.onnx_backend:OnnxBackend",
}


def register_backend(name: str, target: str) -> None:
    """Make ``"module:Class"`` available as ``--backend name`` in this process (a script or
    notebook); installed packages register through the ``genbatch.backends`` entry point."""
    _BUILTIN[name] = target


def _registered() -> dict[str, str]:
    found = dict(_BUILTIN)
    for entry in entry_points(group="genbatch.backends"):
        found.setdefault(entry.name, entry.value)
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
            errors.append("the image contains NaN or infinite values (try --dtype fp32)")
            continue
        as_uint8 = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        if as_uint8.max() == 0:
            pixels.append(None)
            errors.append("the image is all black (a safety checker, or a numerical failure)")
            continue
        pixels.append(as_uint8)
        errors.append(None)
    return pixels, errors
