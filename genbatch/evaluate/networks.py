"""What turns an image into numbers: the networks (and the judge) an evaluation runs.

Each is an :class:`Extractor`: a name, a fingerprint that changes whenever its output
would (the weights' hash), and a function from a batch of (H, W, 3) uint8 images to one
row per image. Weights come only from where the user has them; a missing file is a
GenbatchError naming what to download and where to put it. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genbatch.errors import GenbatchError
from genbatch.evaluate import shapes_judge, shapes_scene
from genbatch.evaluate.images import EvalImage

# torch-fidelity's Inception (the TensorFlow FID network, converted); pytorch-fid names the same file pt_inception-...
INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
PIXEL_SIZE = 64  # pixel-space diversity compares images at 64x64
SHAPES_COLUMNS = ("parsed", *shapes_judge.CATEGORIES)


@dataclass
class Extractor:
    name: str
    fingerprint: str
    compute: Callable[[list[np.ndarray], list[EvalImage]], np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)  # what eval.json says about it
    dims: tuple[int, ...] = ()  # the row's parts, e.g. (pool features, logits)


def module_fingerprint(module: Any) -> str:
    """A hash of a torch module's class and weights."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _by_size(images: list[np.ndarray]) -> list[list[int]]:
    """Indices of the images grouped by size (a batch tensor holds one size)."""
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    return list(groups.values())


# --------------------------------------------------------------------------- FID / IS features


def feature_extractor(module: Any, device: str, *, name: str = "features", info: dict | None = None) -> Extractor:
    """An extractor over a feature network for FID and IS: a torch module that takes
    (N, 3, H, W) uint8 images and returns pool features (N, D), or a tuple of pool
    features and class logits (N, K) (torch-fidelity's Inception gives both)."""
    import torch

    module = module.to(device).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = module(torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(device))
        parts = out if isinstance(out, (tuple, list)) else (out,)
        return np.concatenate([p.detach().float().cpu().reshape(len(batch), -1).numpy() for p in parts[:2]], axis=1)

    probe = module(torch.zeros(1, 3, PIXEL_SIZE, PIXEL_SIZE, dtype=torch.uint8, device=device))
    parts = probe if isinstance(probe, (tuple, list)) else (probe,)
    dims = tuple(int(p.reshape(1, -1).shape[1]) for p in parts[:2])

    def compute(images: list[np.ndarray], _: list[EvalImage]) -> np.ndarray:
        rows = np.zeros((len(images), sum(dims)), np.float32)
        for indices in _by_size(images):
            rows[indices] = run(np.stack([images[i] for i in indices]))
        return rows

    fingerprint = module_fingerprint(module)
    return Extractor(name, fingerprint, compute, {"name": name, "fingerprint": fingerprint, **(info or {})}, dims)


def find_inception_weights(path: str | Path | None) -> Path:
    import torch

    if path:
        weights = Path(path).expanduser()
        if not weights.is_file():
            raise GenbatchError(f"--inception-weights {path}: no such file; download {INCEPTION_URL}")
        return weights
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for name in INCEPTION_FILES:
        if (checkpoints / name).is_file():
            return checkpoints / name
    raise GenbatchError(
        "the Inception network (FID, IS, feature-space diversity) needs its weights, and genbatch downloads "
        "nothing while it runs: on a machine with "
        f"network access download {INCEPTION_URL} (91 MB) and put it in {checkpoints}/ "
        "or pass it with --inception-weights FILE"
    )


def inception_extractor(weights: Path, device: str) -> Extractor:
    """torch-fidelity's Inception v3 (the network of published FID and IS figures): pool
    features (2048) and unbiased logits (1008), images resized to 299x299 as TensorFlow 1 did."""
    try:
        from torch_fidelity import FeatureExtractorInceptionV3
    except Exception as err:  # not installed, or a torchvision build that does not match torch
        raise GenbatchError(
            f"FID and IS use torch-fidelity's Inception network, which does not import here "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "install it with pip install 'genbatch[eval]' (it needs the torchvision build "
            "that matches your torch)"
        ) from None
    try:
        network = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights)
        )
    except Exception as err:
        raise GenbatchError(
            f"{weights}: not the Inception weights torch-fidelity reads "
            f"({type(err).__name__}); download {INCEPTION_URL}"
        ) from None
    return feature_extractor(network, device, name="inception-2015-12-05", info={"weights": str(weights)})


# --------------------------------------------------------------------------- CLIP


def find_clip(spec: str | None) -> Path:
    """A CLIP model folder: a local folder, or a hub id present in the local Hugging Face cache."""
    spec = spec or DEFAULT_CLIP
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise GenbatchError(
                f"--clip-model {spec}: no config.json in this folder; give a saved CLIP model "
                "(CLIPModel and CLIPProcessor save_pretrained)"
            )
        return path
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise GenbatchError(f"--clip-model {spec}: no such folder, and not a Hugging Face id like {DEFAULT_CLIP}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:
        raise GenbatchError(
            f"CLIP score needs the CLIP model {spec!r}, which is not in the local Hugging Face cache, and genbatch "
            f"downloads nothing while it runs: on a machine with network access run `huggingface-cli download {spec}` "
            "(or copy its HF_HOME cache here), or pass a local folder with --clip-model"
        ) from None


def clip_extractor(folder: Path, device: str) -> Extractor:
    """Per image: the CLIP score against its own prompt (100 x cosine, before the clip at
    0) followed by the image embedding. The prompt is part of the job key, so the row
    belongs to the image's cache id."""
    import torch
    from transformers import CLIPModel, CLIPProcessor
    from transformers.utils import logging as hf_logging

    from genbatch.pipelines.checkpoints import refuse_pickles

    refuse_pickles(folder, [""], option="--clip-model ", opt_in=None)  # .safetensors only: a pickle runs code
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).to(device).eval()
        processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as err:
        raise GenbatchError(
            f"--clip-model {folder}: not a CLIP model with its processor "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    max_tokens = model.config.text_config.max_position_embeddings

    def embed(output: Any) -> torch.Tensor:
        tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
        return tensor / tensor.norm(p=2, dim=-1, keepdim=True)

    def compute(images: list[np.ndarray], items: list[EvalImage]) -> np.ndarray:
        with torch.no_grad():
            pixels = processor(
                images=[torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images], return_tensors="pt"
            )
            image_emb = embed(model.get_image_features(pixel_values=pixels["pixel_values"].to(device)))
            text = processor(
                text=[i.prompt for i in items],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_tokens,
            )
            text_emb = embed(
                model.get_text_features(
                    input_ids=text["input_ids"].to(device), attention_mask=text["attention_mask"].to(device)
                )
            )
        scores = 100 * (image_emb * text_emb).sum(-1, keepdim=True)
        return torch.cat([scores, image_emb], dim=1).float().cpu().numpy()

    fingerprint = module_fingerprint(model)
    return Extractor(
        "clip",
        fingerprint,
        compute,
        {"name": str(folder), "fingerprint": fingerprint},
        (1, int(model.config.projection_dim)),
    )


# --------------------------------------------------------------------------- weight-free ones


def pixel_extractor() -> Extractor:
    """Each image at 64x64 (bilinear), as floats in [0, 1]: pixel-space diversity."""
    from PIL import Image

    def compute(images: list[np.ndarray], _: list[EvalImage]) -> np.ndarray:
        small = [
            np.asarray(Image.fromarray(i).resize((PIXEL_SIZE, PIXEL_SIZE), Image.Resampling.BILINEAR)) for i in images
        ]
        return np.stack(small).reshape(len(images), -1).astype(np.uint8)

    return Extractor("pixels", f"{PIXEL_SIZE}px-bilinear", compute, {"name": f"pixels at {PIXEL_SIZE}x{PIXEL_SIZE}"})


def shapes_extractor() -> Extractor:
    """The shapes judge: per image, whether its prompt parsed, then 1/0/NaN per category."""
    source = inspect.getsource(shapes_judge) + inspect.getsource(shapes_scene)
    fingerprint = hashlib.sha256(source.encode()).hexdigest()[:16]

    def compute(images: list[np.ndarray], items: list[EvalImage]) -> np.ndarray:
        rows = np.full((len(images), len(SHAPES_COLUMNS)), np.nan)
        for row, image, item in zip(rows, images, items):
            result = shapes_judge.judge(image, item.prompt)
            row[0] = result is not None
            if result is not None:
                row[1:] = [np.nan if (v := result[c]) is None else float(v) for c in shapes_judge.CATEGORIES]
        return rows

    return Extractor("shapes-judge", fingerprint, compute, {"name": "shapes judge", "fingerprint": fingerprint})


def offline() -> None:
    """Make sure no library reaches for a hub while an evaluation runs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
