"""Export a diffusers model to ONNX for ``genbatch run --backend onnx``.

The folder has the layout diffusers' ONNX pipelines load (``model_index.json``,
``text_encoder/model.onnx``, ``unet/model.onnx``, ``vae_decoder/model.onnx``,
``vae_encoder/model.onnx``, tokenizer and scheduler configs), plus the component configs
genbatch reads sizes from, the source's ``genbatch.json``, and ``genbatch_export.json``
(source model and fingerprint, opset, precision, versions, parity figures).

Why ``torch.onnx.export`` (the TorchScript-based exporter, ``dynamo=False``) and no
export library: optimum-onnx 0.1.0 pins transformers < 4.58, which would force a
downgrade, and diffusers' ONNX conversion script is unmaintained. The TorchScript exporter
gives ~1e-6 parity on these components and is ~20x faster than the dynamo exporter on a
UNet; the small wrappers of :mod:`genbatch.export.wrappers` are all an SD or SDXL export
needs. :mod:`genbatch.export.parity` checks the export against torch before it is installed.

Weights over 2 GB (an SD-1.5 UNet in fp32 is ~3.4 GB) go to ONNX external data, one
``model.onnx_data`` file beside each ``model.onnx``; ``force_external_data`` does the
same for small models, so the path is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genbatch.errors import GenbatchError, ModelError
from genbatch.pipelines.checkpoints import components, pickle_refused, refuse_pickles
from genbatch.pipelines.families import SD, SDXL, folder_family, is_xl
from genbatch.pipelines.model_files import EXPORT_INFO, fingerprint, is_onnx_export
from genbatch.pipelines.model_lookup import ModelRef, resolve_model
from genbatch.safe_write import install_folder, staged_folder

DEFAULT_OPSET = 17
EXTERNAL_DATA = "model.onnx_data"
PROTOBUF_LIMIT = 2**31 - 1 - 64 * 2**20  # 2 GB, less headroom for the graph itself
SUPPORTED = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
XL_COMPONENTS = ("text_encoder_2",)  # an SDXL export's, besides COMPONENTS
COMPONENTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")


class VerificationError(GenbatchError):
    """The export differs from the torch model by more than the tolerance."""

    exit_code = 1

    def __init__(self, message: str, result: ExportResult):
        super().__init__(message)
        self.result = result


@dataclass
class ExportResult:
    out: Path
    model: str
    source_fingerprint: str
    opset: int
    fp16: bool
    seconds: float
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    parity: dict[str, Any] | None = None
    fingerprint: str = ""

    @property
    def passed(self) -> bool:
        return self.parity is None or bool(self.parity.get("passed"))


def default_out(model: ModelRef) -> Path:
    return Path("exports") / f"{model.name.replace('/', '--')}-onnx"


def check_supported(model: ModelRef) -> dict[str, Any]:
    """The source's model_index.json, or a clear error saying what genbatch can export."""
    index_path = model.path / "model_index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{model.name}: cannot read {index_path}: {err}") from None
    cls = str(index.get("_class_name", "?"))
    if is_onnx_export(model.path) or cls.startswith("Onnx"):
        raise ModelError(f"{model.name} ({model.path}) is already an ONNX export; run it with --backend onnx")
    supported = f"genbatch export supports {', '.join(SUPPORTED)} folders (SD 1.x/2.x and SDXL)"
    family = folder_family(model.path)
    if family is not None and family not in (SD, SDXL):
        raise ModelError(
            f"{model.name}: {cls} is a {family.title} pipeline, which genbatch cannot export to ONNX "
            f"(run it with --backend torch); {supported}"
        )
    needed = SDXL.components if family is SDXL else ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    missing = [c for c in needed if not index.get(c, [None])[0]]
    if cls not in SUPPORTED or missing:
        detail = f" (it has no {', '.join(missing)})" if missing else ""
        raise ModelError(f"{model.name}: {cls} is not supported{detail}; {supported}")
    return index


def _check_out(out: Path, model: ModelRef, overwrite: bool) -> None:
    resolved = out.resolve()
    if resolved == model.path or resolved in model.path.parents:
        raise GenbatchError(f"--out {out}: that would overwrite the source model {model.path}")
    if out.exists() and not out.is_dir():
        raise GenbatchError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise GenbatchError(f"--out {out} is not empty; pass --overwrite to replace it, or choose another --out")
        if not (out / "model_index.json").is_file():  # --overwrite replaces an export, not any folder
            raise GenbatchError(
                f"--out {out} is not empty and holds no model (no model_index.json); "
                "--overwrite only replaces an earlier export; choose another --out"
            )


def export_onnx(
    model: str | None,
    out: Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    overwrite: bool = False,
    verify: bool = True,
    force_external_data: bool = False,
) -> ExportResult:
    """Export ``model`` (a built-in name, diffusers folder or cached hub id) to ONNX in ``out``.

    The export is written to a staging folder next to ``out`` and moved into place only
    when every component file is there and, with ``verify``, parity is within tolerance;
    a failed verification keeps the staging folder as ``<out>.unverified`` and raises
    :class:`VerificationError` (exit code 1) with the figures.
    """
    from genbatch.export.parity import format_parity, verify_export

    started = time.monotonic()
    ref = resolve_model(model)
    index = check_supported(ref)
    out = Path(out) if out is not None else default_out(ref)
    _check_out(out, ref, overwrite)
    _check_tools(opset, verify=verify, fp16=fp16)
    pipe = _load_pipeline(ref, index)
    with staged_folder(out) as staging:
        # 1. Components
        result = ExportResult(
            out=out, model=ref.name, source_fingerprint=ref.fingerprint, opset=opset, fp16=fp16, seconds=0.0
        )
        for part in components_of(pipe):
            result.components[part] = _export_component(
                pipe, part, staging, opset=opset, fp16=fp16, force_external_data=force_external_data
            )
        # 2. Configs, tokenizer, scheduler, model_index.json, genbatch.json
        _write_configs(ref, index, staging)
        _check_complete(staging)
        # 3. Verification: each component, then images end to end
        if verify:
            result.parity = verify_export(pipe, staging, ref, fp16=fp16)
        result.seconds = round(time.monotonic() - started, 3)
        _write_info(staging, ref, result)
        result.fingerprint = fingerprint(staging)
        if not result.passed:
            kept = out.with_name(out.name + ".unverified")
            install_folder(staging, kept)
            raise VerificationError(
                f"the ONNX export of {ref.name} differs from torch by more than the tolerance:\n"
                + format_parity(result.parity)
                + f"\nnot installed at {out}; kept for inspection at {kept}",
                result,
            )
        _make_readable(staging)
        install_folder(staging, out)
        return result


def _check_tools(opset: int, *, verify: bool, fp16: bool) -> None:
    """The opset and ONNX Runtime the export needs, checked before a model loads."""
    if opset < 14:
        raise GenbatchError(f"--opset {opset}: at least 14 is needed (scaled dot-product attention, LayerNorm)")
    if verify or fp16:  # the parity check runs ONNX Runtime; the fp16 converter ships with it
        from genbatch.backends.onnx_runtime import onnxruntime

        onnxruntime()
    from genbatch.pipelines.torch_runtime import quiet_hf_libraries

    quiet_hf_libraries()


def components_of(pipe: Any) -> tuple[str, ...]:
    """The ONNX files an export of ``pipe`` has: SDXL's second text encoder besides SD's four."""
    return COMPONENTS + (XL_COMPONENTS if is_xl(pipe) else ())


def _load_pipeline(ref: ModelRef, index: dict[str, Any]) -> Any:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    # safetensors only: a pickled .bin can run code when it is loaded (genbatch export has no --allow-pickle)
    refuse_pickles(ref.path, components(ref.path), opt_in=None)
    try:
        with warnings.catch_warnings(), pickle_refused(ref.path, False, opt_in=None):
            warnings.simplefilter("ignore")
            if index.get("_class_name") == "StableDiffusionXLPipeline":
                pipe = StableDiffusionXLPipeline.from_pretrained(ref.path, use_safetensors=True)
            else:
                pipe = StableDiffusionPipeline.from_pretrained(
                    ref.path,
                    safety_checker=None,
                    feature_extractor=None,
                    requires_safety_checker=False,
                    use_safetensors=True,
                )
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(f"cannot load {ref.name} from {ref.path}: {err}") from err
    unet = pipe.unet.config
    # addition_embed_type "text" is computed from the prompt embeddings the UNet already takes,
    # so it traces into the graph; SDXL's "text_time" gets its own inputs (text_embeds, time_ids);
    # other extra conditioning would need inputs the loop lacks.
    allowed = ("text_time",) if is_xl(pipe) else (None, "text")
    if getattr(unet, "time_cond_proj_dim", None) or getattr(unet, "addition_embed_type", None) not in allowed:
        raise ModelError(
            f"{ref.name}: this UNet takes extra conditioning (time_cond_proj_dim / addition_embed_type), "
            "which the ONNX export does not carry; SD 1.x/2.x UNets are supported"
        )
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if part is not None:
            part.eval()
    return pipe


# --- components --------------------------------------------------------------------------


def _export_component(
    pipe: Any, part: str, staging: Path, *, opset: int, fp16: bool, force_external_data: bool
) -> dict[str, Any]:
    import onnx
    import torch

    from genbatch.export.wrappers import wrappers

    module, args, inputs, outputs, axes = wrappers(pipe)[part]
    folder = staging / part
    scratch = staging / f".scratch-{part}"
    folder.mkdir(parents=True)
    scratch.mkdir()
    began = time.monotonic()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(scratch / "model.onnx"),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(scratch / "model.onnx"), load_external_data=True)
    weight_bytes = sum(len(t.raw_data) for t in proto.graph.initializer)
    if fp16:
        proto = _to_fp16(proto, large=weight_bytes > PROTOBUF_LIMIT)
        weight_bytes = sum(len(t.raw_data) for t in proto.graph.initializer)
    external = force_external_data or weight_bytes > PROTOBUF_LIMIT
    target = folder / "model.onnx"
    if external:
        onnx.save_model(
            proto,
            str(target),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=EXTERNAL_DATA,
            size_threshold=0 if force_external_data else 1024,
        )
    else:
        onnx.save_model(proto, str(target))
    shutil.rmtree(scratch)
    onnx.checker.check_model(str(target))
    files = sorted(p.name for p in folder.iterdir())
    return {
        "files": files,
        "external_data": external,
        "weight_bytes": weight_bytes,
        "seconds": round(time.monotonic() - began, 3),
    }


def _to_fp16(proto: Any, *, large: bool) -> Any:
    """The graph with fp16 weights; inputs and outputs stay fp32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    proto = convert_float_to_float16(proto, keep_io_types=True, disable_shape_infer=large)
    sortable = OnnxModel(proto)
    sortable.topological_sort()  # the converter appends its input casts after their users
    return sortable.model


def _write_configs(ref: ModelRef, index: dict[str, Any], staging: Path) -> None:
    import diffusers

    src = ref.path
    xl = index.get("_class_name") == "StableDiffusionXLPipeline"
    for part, config in (
        ("text_encoder", "text_encoder"),
        ("unet", "unet"),
        ("vae_decoder", "vae"),
        ("vae_encoder", "vae"),
        ("text_encoder_2", "text_encoder_2"),
    ):
        if (src / config / "config.json").is_file() and (staging / part).is_dir():
            shutil.copy2(src / config / "config.json", staging / part / "config.json")
    shutil.copytree(src / "tokenizer", staging / "tokenizer")
    if xl:
        shutil.copytree(src / "tokenizer_2", staging / "tokenizer_2")
    shutil.copytree(src / "scheduler", staging / "scheduler")
    model_index = {
        "_class_name": "OnnxStableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": index["scheduler"],
        "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": index["tokenizer"],
        "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
        "vae_encoder": ["diffusers", "OnnxRuntimeModel"],
    }
    if xl:  # genbatch's own layout: diffusers has no ONNX SDXL pipeline
        model_index.update(
            {
                "_class_name": "OnnxStableDiffusionXLPipeline",
                "text_encoder_2": ["diffusers", "OnnxRuntimeModel"],
                "tokenizer_2": index["tokenizer_2"],
                "force_zeros_for_empty_prompt": index.get("force_zeros_for_empty_prompt", True),
            }
        )
    (staging / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n", encoding="utf-8")
    own = {}
    if (src / "genbatch.json").is_file():
        own = json.loads((src / "genbatch.json").read_text(encoding="utf-8"))
    own.update(
        {k: v for k, v in ref.defaults.items() if k in ("steps", "guidance_scale", "width", "height") and k not in own}
    )
    own["source_model"] = ref.name
    (staging / "genbatch.json").write_text(json.dumps(own, indent=2) + "\n", encoding="utf-8")


def _check_complete(folder: Path) -> None:
    """Every component's model.onnx, and the external data it names, is on disk."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    missing = []
    xl = (folder / "tokenizer_2").is_dir()
    for part in COMPONENTS + (XL_COMPONENTS if xl else ()):
        path = folder / part / "model.onnx"
        if not path.is_file() or path.stat().st_size == 0:
            missing.append(f"{part}/model.onnx")
            continue
        proto = onnx.load(str(path), load_external_data=False)
        for tensor in proto.graph.initializer:
            if uses_external_data(tensor):
                location = ExternalDataInfo(tensor).location
                if not (path.parent / location).is_file():
                    missing.append(f"{part}/{location}")
    for name in (
        "model_index.json",
        "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "vae_decoder/config.json",
    ):
        if not (folder / name).is_file():
            missing.append(name)
    if missing:
        raise GenbatchError(f"the export is incomplete; missing: {', '.join(sorted(set(missing)))}")


def _make_readable(folder: Path) -> None:
    """mkdtemp and onnx's external-data writer create owner-only files; an export is shared."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _write_info(staging: Path, ref: ModelRef, result: ExportResult) -> None:
    from genbatch.report.summaries import versions

    info = {
        "source_model": ref.name,
        "source_path": str(ref.path),
        "source_fingerprint": ref.fingerprint,
        "format": "onnx",
        "opset": result.opset,
        "fp16": result.fp16,
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "components": result.components,
        "seconds": result.seconds,
        "parity": result.parity,
        "versions": versions(),
    }
    (staging / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
