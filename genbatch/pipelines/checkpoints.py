"""Single-file checkpoints (an A1111 or civitai ``model.safetensors``) and ``--vae``.

A single file holds the weights but not the pipeline's configs and tokenizer: those come from
a diffusers folder or a hub id in the local cache given with ``--config``, and diffusers'
``from_single_file`` builds the pipeline from both, offline. The model's fingerprint (in every
job key) covers the file's sha256 and the config's fingerprint; the A1111 ``Model hash`` is the
first 10 hex digits of the file's sha256, as A1111 writes it. ``--vae`` replaces the pipeline's
VAE with a diffusers VAE folder, a hub id in the cache, or a single VAE file; it is part of the
fingerprint too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from genbatch.errors import ModelError

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_READ = 1 << 24


def is_checkpoint_file(path: Path) -> bool:
    return path.suffix.lower() in CHECKPOINT_SUFFIXES


def file_sha256(path: Path) -> str:
    """A file's sha256, remembered under $GENBATCH_HOME by path, size and modification time
    (a multi-GB checkpoint is read once, as A1111 does)."""
    from genbatch.home import genbatch_home

    path = Path(path).resolve()
    stat = path.stat()
    cache_file = genbatch_home() / "file-hashes.json"
    entry = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    if entry in cache:
        return cache[entry]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ):
            digest.update(chunk)
    cache[entry] = digest.hexdigest()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temp = cache_file.with_name(f"{cache_file.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps(cache), encoding="utf-8")
        os.replace(temp, cache_file)
    except OSError:  # a read-only home: hash again next time
        pass
    return cache[entry]


def _combined(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def check_checkpoint_file(file: Path, config: str | None) -> None:
    """A single-file checkpoint genbatch can load: a .safetensors file, with ``--config`` naming
    its pipeline's configs."""
    if file.suffix.lower() != ".safetensors":
        raise ModelError(
            f"{file}: genbatch loads single-file checkpoints as .safetensors only ({file.suffix} files "
            "are pickles, which can run code when loaded); use the .safetensors version of the model"
        )
    if not config:
        raise ModelError(missing_config_message(file))


def checkpoint_ref(file: Path, base: Any, config_option: str) -> Any:
    """The ModelRef of a single-file checkpoint: ``base`` (the model ``--config`` names, whose folder
    gives the configs) with ``checkpoint`` the file; ``config_option`` names --config in messages."""
    if base.checkpoint is not None:
        raise ModelError(f"{config_option}: expected a diffusers folder or hub id, not another single file")
    sha = file_sha256(file)
    return dataclasses.replace(
        base,
        name=file.name,
        source="single-file",
        fingerprint=_combined(sha, base.fingerprint),
        checkpoint=file.resolve(),
        a1111_hash=sha[:10],
    )


def missing_config_message(file: Path) -> str:
    from genbatch.pipelines.hub_cache import download_command

    repo = _config_repo(file)
    which = (
        f"it looks like {repo}: run\n    {download_command(repo)} --include '*.json' '*.txt'\nthen add --config {repo}"
        if repo
        else "add --config with the diffusers folder (or cached hub id) of the model it was trained from, e.g. "
        "--config stable-diffusion-v1-5/stable-diffusion-v1-5"
    )
    return (
        f"{file} is a single-file checkpoint; genbatch needs its pipeline's configs and tokenizer as well, "
        f"from a diffusers folder or a hub id in the local cache: {which}"
    )


class _Shape:
    def __init__(self, shape: list[int]):
        self.shape = tuple(shape)
        self.ndim = len(shape)


def _config_repo(file: Path) -> str | None:
    """The hub id of the pipeline a checkpoint's layout matches (diffusers' own guess), read
    from the file's header alone; None when unsure."""
    try:
        from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS, infer_diffusers_model_type
        from safetensors import safe_open

        with safe_open(str(file), "np") as handle:
            keys = {key: _Shape(handle.get_slice(key).get_shape()) for key in handle.keys()}
        kind = infer_diffusers_model_type(keys)
        return DIFFUSERS_DEFAULT_PIPELINE_PATHS[kind]["pretrained_model_name_or_path"]
    except Exception:  # not a known layout, or not readable: the general advice
        return None


def with_vae(model: Any, spec: str | None, snapshot: Path | None = None) -> Any:
    """``model`` with its VAE replaced by ``--vae`` (folder, one .safetensors file read with the
    model's own VAE config, or a hub id whose cached ``snapshot`` the caller found); the
    fingerprint changes with it."""
    if not spec:
        return model
    from genbatch.pipelines.model_files import fingerprint

    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            raise ModelError(f"--vae {spec}: expected a .safetensors file, a diffusers VAE folder or a hub id")
        vae_print = file_sha256(path)[:16]
    elif path.is_dir():
        if not ((path / "config.json").is_file() or (path / "vae" / "config.json").is_file()):
            raise ModelError(f"--vae {spec}: not a diffusers VAE folder (no config.json or vae/config.json)")
        vae_print = fingerprint(path)
    elif snapshot is not None:
        path = snapshot
        vae_print = fingerprint(path)
    else:
        raise ModelError(f"--vae {spec}: no such file or folder")
    return dataclasses.replace(model, fingerprint=_combined(model.fingerprint, "vae", vae_print), vae=path.resolve())


def load_pipeline(model: Any, torch_dtype: Any) -> Any:
    """The diffusers pipeline of ``model``: ``from_pretrained`` of its folder, or
    ``from_single_file`` of its checkpoint with the folder's configs; then its ``--vae``."""
    import diffusers

    from genbatch.pipelines.model_files import read_json
    from genbatch.progress import silence_library_progress

    silence_library_progress()

    if model.checkpoint is None:
        pipe = diffusers.DiffusionPipeline.from_pretrained(model.path, torch_dtype=torch_dtype)
    else:
        cls = getattr(diffusers, read_json(model.path / "model_index.json").get("_class_name", ""), None)
        if cls is None or not hasattr(cls, "from_single_file"):
            raise ModelError(f"{model.checkpoint}: the --config pipeline ({model.path}) cannot load single files")
        pipe = cls.from_single_file(
            str(model.checkpoint), config=str(model.path), torch_dtype=torch_dtype, local_files_only=True
        )
    if model.vae is not None:
        pipe.vae = load_vae(model.vae, model.path, torch_dtype)
    return pipe


def load_vae(path: Path, config_folder: Path, torch_dtype: Any) -> Any:
    from diffusers import AutoencoderKL

    if path.is_file():
        return AutoencoderKL.from_single_file(
            str(path), config=str(config_folder), subfolder="vae", torch_dtype=torch_dtype, local_files_only=True
        )
    sub = "vae" if (path / "vae" / "config.json").is_file() else None
    return AutoencoderKL.from_pretrained(path, subfolder=sub, torch_dtype=torch_dtype)
