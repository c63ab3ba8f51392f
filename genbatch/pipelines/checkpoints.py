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

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
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


def load_pipeline(model: Any, torch_dtype: Any, *, allow_pickle: bool = False, quantization: Any = None) -> Any:
    """The diffusers pipeline of ``model``: ``from_pretrained`` of its folder, or
    ``from_single_file`` of its checkpoint with the folder's configs; then its ``--vae``.
    Weights load from .safetensors files only, unless ``allow_pickle`` (--allow-pickle).
    ``quantization``: a folder's ``quantization_config`` (--quantize nf4), else None."""
    import diffusers

    from genbatch.pipelines.model_files import read_json
    from genbatch.progress import silence_library_progress

    silence_library_progress()

    if model.checkpoint is None:
        if not allow_pickle:
            refuse_pickles(model.path, components(model.path))
        with pickle_refused(model.path, allow_pickle):
            quantized = {"quantization_config": quantization} if quantization is not None else {}
            pipe = diffusers.DiffusionPipeline.from_pretrained(
                model.path, torch_dtype=torch_dtype, **safetensors_only(allow_pickle), **quantized
            )
    else:
        cls = getattr(diffusers, read_json(model.path / "model_index.json").get("_class_name", ""), None)
        if cls is None or not hasattr(cls, "from_single_file"):
            raise ModelError(f"{model.checkpoint}: the --config pipeline ({model.path}) cannot load single files")
        pipe = cls.from_single_file(
            str(model.checkpoint), config=str(model.path), torch_dtype=torch_dtype, local_files_only=True
        )
    if model.vae is not None:
        pipe.vae = load_vae(model.vae, model.path, torch_dtype, allow_pickle=allow_pickle)
    return pipe


def load_vae(path: Path, config_folder: Path, torch_dtype: Any, *, allow_pickle: bool = False) -> Any:
    from diffusers import AutoencoderKL

    if path.is_file():
        return AutoencoderKL.from_single_file(
            str(path), config=str(config_folder), subfolder="vae", torch_dtype=torch_dtype, local_files_only=True
        )
    sub = "vae" if (path / "vae" / "config.json").is_file() else None
    if not allow_pickle:
        refuse_pickles(path, [sub or ""], option="--vae ")
    with pickle_refused(path, allow_pickle, option="--vae "):
        return AutoencoderKL.from_pretrained(
            path, subfolder=sub, torch_dtype=torch_dtype, **safetensors_only(allow_pickle)
        )


# --- safetensors only, unless --allow-pickle ---------------------------------------------------
# A .bin (torch.save) is a pickle: unpickling one can run any code it names. Only torch's
# weights_only unpickler would stand in the way, so genbatch loads .safetensors files only.

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
OPT_IN = "--allow-pickle"


def safetensors_only(allow_pickle: bool) -> dict[str, Any]:
    """``from_pretrained``'s keywords: safetensors only (its default falls back to unpickling a
    .bin when a folder has no .safetensors), or its default with ``allow_pickle``."""
    return {} if allow_pickle else {"use_safetensors": True}


def components(folder: Path) -> list[str]:
    """The sub-folders of a diffusers pipeline folder that hold a model (its model_index.json)."""
    from genbatch.pipelines.model_files import read_json

    index = read_json(Path(folder) / "model_index.json")
    return [
        name
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and value[:1] != [None]
    ]


def pickle_only_parts(folder: Path, parts: list[str]) -> list[str]:
    """The weights files of ``parts`` (sub-folders of ``folder``; "" is the folder itself) that
    are pickles with no .safetensors file beside them, e.g. ``unet/diffusion_pytorch_model.bin``."""
    found = []
    for part in parts:
        where = Path(folder) / part
        try:
            files = [f for f in where.iterdir() if f.is_file()]
        except OSError:
            continue  # no such component: diffusers says so
        if any(f.suffix.lower() == ".safetensors" for f in files):
            continue
        pickles = sorted(f for f in files if f.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            found.append(pickles[0].relative_to(folder).as_posix())
    return found


def refuse_pickles(folder: Path, parts: list[str], option: str = "", opt_in: str | None = OPT_IN) -> None:
    """Refuse, before anything loads, a folder whose ``parts`` hold pickled weights only; the
    message names them and the option that allows them (``opt_in``; None where there is none)."""
    pickles = pickle_only_parts(folder, parts)
    if pickles:
        one = len(pickles) == 1
        raise ModelError(
            f"{option}{folder}: {', '.join(pickles)} {'is a pickle' if one else 'are pickles'} (torch.save) "
            f"with no .safetensors file beside {'it' if one else 'them'}; a pickle can run code when it is "
            "loaded, so genbatch loads .safetensors weights only: convert the folder "
            "(save_pretrained(..., safe_serialization=True))"
            + (f", or pass {opt_in} if you trust it" if opt_in else "")
        )


def _has_pickles(folder: Path) -> bool:
    """Whether ``folder`` (or a sub-folder) holds a pickled weights file."""
    try:
        return any(p.suffix.lower() in PICKLE_SUFFIXES for p in Path(folder).rglob("*") if p.is_file())
    except OSError:
        return False


@contextlib.contextmanager
def pickle_refused(folder: Path, allow_pickle: bool, option: str = "", opt_in: str | None = OPT_IN) -> Iterator[None]:
    """diffusers' error for weights it finds no .safetensors file of (safetensors only), in a
    layout :func:`refuse_pickles` does not know, as a ModelError naming the folder and ``opt_in``."""
    try:
        yield
    except OSError as err:
        if allow_pickle or ".safetensors" not in str(err) or not _has_pickles(folder):
            raise  # no weights at all, or another problem: the loader's own message says it
        raise ModelError(
            f"{option}{folder}: {err} genbatch loads .safetensors weights only (a pickle can run code when it "
            f"is loaded)" + (f"; pass {opt_in} to load the folder's pickled weights if you trust it" if opt_in else "")
        ) from err
