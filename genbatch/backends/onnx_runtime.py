"""ONNX Runtime for the onnx backend: the module (or which extra installs it), the execution
providers to run on, and a session per exported component with the providers' options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.errors import GenbatchError, ModelError
from genbatch.home import genbatch_home

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
INSTALL_HINT = "pip install 'genbatch[cpu]' (or 'genbatch[gpu]' on a CUDA machine; never both)"


def onnxruntime():
    """The onnxruntime module, or a message saying which extra installs it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise GenbatchError(f"--backend onnx needs ONNX Runtime, which is not installed: {INSTALL_HINT}") from None
    return ort


def choose_providers(device: str, requested: list[str] | None = None) -> list[str]:
    """Execution providers in priority order: the requested ones (checked), else the best
    available for the device (TensorRT, then CUDA, then CPU)."""
    available = onnxruntime().get_available_providers()
    if requested:
        expanded = [p if p.endswith("ExecutionProvider") else p + "ExecutionProvider" for p in requested]
        missing = [p for p in expanded if p not in available]
        if missing:
            raise GenbatchError(
                f"--providers: {', '.join(missing)} not available in this onnxruntime; "
                f"available: {', '.join(available)}"
            )
        return expanded
    if device == "cpu":
        return ["CPUExecutionProvider"]
    return [p for p in PROVIDER_PREFERENCE if p in available]


def open_sessions(
    ort: Any, path: Path, parts: tuple[str, ...], wanted: list[str], *, device_id: int, fp16: bool
) -> dict[str, Any]:
    """An ONNX Runtime session for each of ``parts`` of the export at ``path``, on the
    ``wanted`` providers."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    provider_args = [(p, provider_options(p, device_id=device_id, fp16=fp16)) for p in wanted]
    try:
        return {
            part: ort.InferenceSession(str(path / part / "model.onnx"), sess_options=options, providers=provider_args)
            for part in parts
        }
    except Exception as err:
        raise ModelError(f"cannot load the ONNX export {path}: {err}") from err


def provider_options(provider: str, *, device_id: int, fp16: bool) -> dict[str, Any]:
    if provider == "CUDAExecutionProvider":
        return {"device_id": device_id}
    if provider == "TensorrtExecutionProvider":
        cache = genbatch_home() / "tensorrt-cache"
        cache.mkdir(parents=True, exist_ok=True)
        return {
            "device_id": device_id,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_fp16_enable": fp16,
        }
    return {}
