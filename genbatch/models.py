"""Find a model by name, folder or Hugging Face id, fingerprint it, and read its defaults.

Nothing here loads weights: planning (``--dry-run``, job keys) needs only the folder.
Built-in models:

- ``shapes``: a small text-to-image model trained on simple coloured shapes, shipped inside
  the package (``genbatch/models/shapes``). The default when present.
- ``tiny-random``: a tiny randomly initialised Stable Diffusion-architecture pipeline built
  from fixed configs and a fixed seed on first use, cached under ``$GENBATCH_HOME``. Its
  images are noise; it exists for smoke tests and for trying the machinery.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .echo import shown, shown_bare
from .errors import ModelError
from .safe_write import install_folder, staged_folder

PACKAGE_MODELS = Path(__file__).parent / "models"
TINY_RANDOM = "tiny-random"
SHAPES = "shapes"
_HASH_CHUNK = 1 << 20
EXPORT_INFO = "genbatch_export.json"  # written by genbatch export beside an ONNX export


def genbatch_home() -> Path:
    """Where genbatch keeps state of its own (built models). ``GENBATCH_HOME`` moves it."""
    return Path(os.environ.get("GENBATCH_HOME") or Path.home() / ".cache" / "genbatch")


@dataclass(frozen=True)
class ModelRef:
    """A model located on disk, with what determines its pixels summarised as a fingerprint."""

    name: str
    path: Path
    source: str  # "builtin", "local" or "hub"
    fingerprint: str
    defaults: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # A single-file checkpoint (genbatch.checkpoints): the file; ``path`` is then its config folder.
    checkpoint: Path | None = None
    a1111_hash: str | None = None  # A1111's "Model hash": the file's sha256, first 10 hex digits
    vae: Path | None = None  # --vae: a VAE that replaces the pipeline's

    @property
    def scheduler(self) -> str | None:
        return self.defaults.get("scheduler")

    def record(self) -> dict[str, Any]:
        """What the ledger and image metadata say of a single file or a --vae (nothing otherwise)."""
        found: dict[str, Any] = {}
        if self.checkpoint is not None:
            found.update(checkpoint=str(self.checkpoint), model_hash=self.a1111_hash)
        if self.vae is not None:
            found["vae"] = self.vae.name
        return found

    @property
    def family(self) -> str:
        """Its diffusers family (genbatch.families), ``"?"`` where genbatch knows none."""
        from .families import folder_family

        found = folder_family(self.path)
        return found.name if found else "?"


def builtin_names() -> list[str]:
    return [SHAPES, TINY_RANDOM] if _shapes_path() else [TINY_RANDOM]


def default_model_name() -> str:
    """The trained ``shapes`` model when the package ships it, else the noise model."""
    return SHAPES if _shapes_path() else TINY_RANDOM


def _shapes_path() -> Path | None:
    path = PACKAGE_MODELS / SHAPES
    return path if (path / "model_index.json").is_file() else None


def resolve_model(spec: str | None, *, config: str | None = None, vae: str | None = None) -> ModelRef:
    """Turn ``--model`` (built-in name, folder, hub id in the local cache, or a single-file
    checkpoint with ``config``, its pipeline folder or hub id) into a ModelRef; ``vae``
    replaces its VAE (genbatch.checkpoints)."""
    from .checkpoints import with_vae

    return with_vae(_resolve(spec, config), vae)


def _resolve(spec: str | None, config: str | None) -> ModelRef:
    from .checkpoints import is_checkpoint_file, resolve_checkpoint

    spec = spec or default_model_name()
    if spec == SHAPES and _shapes_path():
        return _ref(SHAPES, PACKAGE_MODELS / SHAPES, "builtin")
    if spec == TINY_RANDOM:
        return _ref(TINY_RANDOM, ensure_tiny_random(), "builtin")
    path = Path(spec).expanduser()
    if path.is_file() and is_checkpoint_file(path):
        return resolve_checkpoint(path, config)
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise ModelError(
                f"{shown_bare(spec)}: not a diffusers model folder (no model_index.json); expected a folder saved "
                "with save_pretrained(), an ONNX export from 'genbatch export', a Hugging Face id, "
                f"or a built-in name ({', '.join(builtin_names())})"
            )
        return _ref(path.name, path.resolve(), "local")
    if _looks_like_path(spec):
        raise ModelError(_no_such_path(path))
    if spec.count("/") == 1:
        return _ref(spec, _hub_snapshot(spec), "hub")
    raise ModelError(
        f"no model {shown(spec)}: not a built-in name ({', '.join(builtin_names())}), an existing folder, "
        "or a Hugging Face id like 'org/name'"
    )


def _looks_like_path(spec: str) -> bool:
    """A spec that names a file or folder rather than a hub id: it starts like a path, has a
    file extension of a checkpoint, or its first part is a folder here (``models/my-sdxl``)."""
    from .checkpoints import is_checkpoint_file

    if spec.startswith((".", "/", "~", "\\")) or "\\" in spec or spec.count("/") > 1 or is_checkpoint_file(Path(spec)):
        return True
    return "/" in spec and Path(spec).expanduser().parent.is_dir()


def _no_such_path(path: Path) -> str:
    import difflib

    kind = "file" if path.suffix else "folder"
    parent = path.parent if str(path.parent) else Path(".")
    try:
        near = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir()], n=3, cutoff=0.6)
    except OSError:
        near = []
    hint = f"; did you mean {', '.join(shown_bare(str(parent / n)) for n in near)}?" if near else ""
    return f"{shown_bare(str(path))}: no such {kind}{hint}"


def download_command(repo_id: str) -> str:
    """The download command the installed huggingface_hub has: ``hf`` (since 0.34), else the
    older ``huggingface-cli``."""
    from importlib.util import find_spec

    try:
        has_hf = find_spec("huggingface_hub.cli.hf") is not None
    except ModuleNotFoundError:
        has_hf = False
    return f"{'hf' if has_hf else 'huggingface-cli'} download {repo_id}"


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        raise ModelError(
            f"model {shown(repo_id)} is not in the local Hugging Face cache and genbatch does not download "
            "while it runs. On a machine with network access run\n"
            f"    {download_command(shlex.quote(shown_bare(repo_id)))}\n"
            "(or copy the cache folder, HF_HOME, to this machine), or pass a local folder with --model."
        ) from None


def _ref(name: str, path: Path, source: str) -> ModelRef:
    return ModelRef(name=name, path=path, source=source, fingerprint=fingerprint(path), defaults=read_defaults(path))


def fingerprint(path: Path) -> str:
    """A hash of what determines a model's output, cheap even for multi-GB folders.

    Configs and tokenizer files are hashed whole; weight files by size plus their first and
    last MiB, which differ whenever the weights do in practice, without reading gigabytes.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        # genbatch's own notes (defaults, export date and parity figures) do not change pixels.
        if rel.startswith(".") or "/." in rel or rel in ("genbatch.json", EXPORT_INFO) or rel.endswith(".lock"):
            continue
        digest.update(rel.encode() + b"\0")
        hash_weights(digest, file)
    return digest.hexdigest()[:16]


def hash_weights(digest: Any, file: Path) -> None:
    """Feed a file to ``digest``: whole when small, else its size and first and last MiB."""
    size = file.stat().st_size
    with open(file, "rb") as handle:
        if size <= 2 * _HASH_CHUNK:
            digest.update(handle.read())
        else:
            digest.update(str(size).encode())
            digest.update(handle.read(_HASH_CHUNK))
            handle.seek(-_HASH_CHUNK, os.SEEK_END)
            digest.update(handle.read(_HASH_CHUNK))


def is_onnx_export(path: Path) -> bool:
    """Whether a folder is an ONNX export (genbatch export --to onnx), not a diffusers folder."""
    return (Path(path) / "unet" / "model.onnx").is_file()


def vae_scale_factor(vae_config: dict[str, Any]) -> int:
    """How many pixels one latent pixel spans: 2 per VAE down block after the first."""
    return int(2 ** (len(vae_config.get("block_out_channels", [0, 0, 0, 0])) - 1))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_defaults(path: Path) -> dict[str, Any]:
    """Steps, guidance, size and scheduler a model is meant to run at.

    ``genbatch.json`` in the folder wins; otherwise the model's family says
    (:func:`genbatch.families.folder_defaults`: its denoiser's sample size times the VAE's
    downsampling, and the family's usual steps and guidance).
    """
    from .families import folder_defaults

    own = read_json(path / "genbatch.json")
    scheduler = read_json(path / "scheduler" / "scheduler_config.json").get("_class_name")
    defaults = {**folder_defaults(path), "scheduler": scheduler, "description": ""}
    defaults.update({k: v for k, v in own.items() if v is not None})
    if "timesteps" in own:
        train_steps = read_json(path / "scheduler" / "scheduler_config.json").get("num_train_timesteps", 1000)
        defaults["timesteps"] = read_timesteps(path / "genbatch.json", own["timesteps"], train_steps)
    return defaults


def keeps_own_scheduler(requested: str | None, own: str | None) -> bool:
    """Whether --scheduler leaves a model its own scheduler (and with it its own timesteps):
    unset, "default", or naming the class it already has."""
    return not requested or requested in ("default", own)


def read_timesteps(source: Path, value: Any, train_steps: int) -> dict[int, tuple[int, ...]]:
    """``"timesteps": {"10": [999, 960, ...]}`` in genbatch.json: the model's own steps at a
    step count, used with its own scheduler.

    A scheduler's config fixes one spacing for every step count; a model that samples best
    with its steps elsewhere (bunched where layout is decided) lists them here instead."""
    accepted = (
        f'expected {{"<steps>": [<steps> whole numbers, decreasing, each 0 to {train_steps - 1}]}}, '
        'e.g. {"4": [999, 750, 500, 250]}'
    )
    if not isinstance(value, dict) or not value:
        raise ModelError(f'{source}: "timesteps" is {json.dumps(value)}; {accepted}')
    found: dict[int, tuple[int, ...]] = {}
    for count, steps in value.items():
        where = f'{source}: "timesteps" / "{count}"'
        if not str(count).isdigit() or int(count) < 1:
            raise ModelError(f"{where}: the key must be a step count (a whole number from 1); {accepted}")
        if (
            not isinstance(steps, list)
            or len(steps) != int(count)
            or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < train_steps for t in steps)
            or any(a <= b for a, b in zip(steps, steps[1:]))
        ):
            raise ModelError(f"{where} is {json.dumps(steps)}; {accepted}")
        found[int(count)] = tuple(steps)
    return found


def list_models(folders: list[Path] | tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """Models genbatch can use here without a download: built-ins, the local HF cache and
    ``folders``, each with its family and whether it runs on torch and on onnx
    (:func:`genbatch.families.runs_on`: True, or the reason it does not)."""
    from .families import runs_on

    found: list[dict[str, Any]] = []
    for folder in folders:
        ref = resolve_model(str(folder))
        found.append(
            {
                "name": ref.name,
                "source": "local",
                "path": str(ref.path),
                "present": True,
                "default": False,
                "description": ref.defaults.get("description") or "diffusers pipeline folder",
            }
        )
    for name in builtin_names():
        path = _shapes_path() if name == SHAPES else genbatch_home() / "models" / TINY_RANDOM
        defaults = read_defaults(path) if path and path.exists() else {}
        found.append(
            {
                "name": name,
                "source": "builtin",
                "path": str(path),
                "present": bool(path and (path / "model_index.json").exists()),
                "default": name == default_model_name(),
                "description": defaults.get("description") or _BUILTIN_DESCRIPTIONS[name],
            }
        )
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type != "model":
                continue
            revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
            if revisions and (Path(revisions[0].snapshot_path) / "model_index.json").exists():
                found.append(
                    {
                        "name": repo.repo_id,
                        "source": "hub-cache",
                        "path": str(revisions[0].snapshot_path),
                        "present": True,
                        "default": False,
                        "description": "diffusers pipeline in the local Hugging Face cache",
                    }
                )
    except Exception:  # no cache folder yet, or an unreadable one: nothing to list
        pass
    for entry in found:
        path = Path(entry["path"])
        # the built-ins are SD pipelines, also before tiny-random is first built
        entry.update(
            runs_on(path)
            if entry["present"]
            else {
                "family": "sd",
                "pipeline": "StableDiffusionPipeline",
                "torch": True,
                "onnx": "after genbatch export --to onnx",
                "notes": "",
            }
        )
    return found


_BUILTIN_DESCRIPTIONS = {
    SHAPES: "small text-to-image model trained on coloured shapes, 64x64 (shipped)",
    TINY_RANDOM: "tiny randomly initialised SD-architecture pipeline; its images are noise (for tests)",
}


# --- the tiny random model -------------------------------------------------------------------


def ensure_tiny_random() -> Path:
    """Build the tiny noise model once into the cache, then reuse it.

    Built in a temporary folder and renamed into place, under a file lock, so concurrent
    first runs neither collide nor leave a half-written model behind.
    """
    from filelock import FileLock

    target = genbatch_home() / "models" / TINY_RANDOM
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "model_index.json").is_file():
            return target
        with staged_folder(target) as staging:
            build_tiny_random(staging)
            install_folder(staging, target)
    return target


def _byte_level_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE (GPT-2, CLIP) uses for the 256 bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def write_clip_tokenizer(folder: Path, *, max_length: int = 77) -> None:
    """A byte-level CLIP BPE tokenizer with no merges, written offline.

    Every byte is a token, so any prompt tokenizes; without ``tokenizer_config.json``'s
    ``model_max_length`` prompts would pad to ~1e30 tokens.
    """
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_level_alphabet()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": max_length, "tokenizer_class": "CLIPTokenizer"}), encoding="utf-8"
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            }
        ),
        encoding="utf-8",
    )


def build_tiny_random(folder: Path) -> None:
    """Save a deterministic tiny SD pipeline (64x64 images) to ``folder``.

    Configs follow diffusers' own fast tests; ``torch.manual_seed(0)`` before each component
    makes the weights, and so every test image, the same on every machine.
    """
    from .progress import silence_library_progress

    silence_library_progress()
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer_dir = folder / "tokenizer"
    write_clip_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=2,
        norm_num_groups=2,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=8,
            intermediate_size=16,
            layer_norm_eps=1e-05,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    (folder / "genbatch.json").write_text(
        json.dumps(
            {
                "name": TINY_RANDOM,
                "description": _BUILTIN_DESCRIPTIONS[TINY_RANDOM],
                "steps": 4,
                "guidance_scale": 5.0,
                "width": 64,
                "height": 64,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
