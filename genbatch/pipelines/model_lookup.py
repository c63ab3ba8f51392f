"""Find a model by built-in name, folder, single-file checkpoint or Hugging Face id in the
local cache, as a ModelRef: where it is, its fingerprint and its defaults. Nothing here
loads weights, and nothing is downloaded."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genbatch.echo import shown, shown_bare
from genbatch.errors import ModelError
from genbatch.pipelines.builtin import (
    PACKAGE_MODELS,
    SHAPES,
    TINY_RANDOM,
    builtin_names,
    default_model_name,
    ensure_tiny_random,
    shapes_path,
)
from genbatch.pipelines.checkpoints import check_checkpoint_file, checkpoint_ref, is_checkpoint_file, with_vae
from genbatch.pipelines.families import read_defaults
from genbatch.pipelines.hub_cache import cached_snapshot, download_command
from genbatch.pipelines.model_files import fingerprint


@dataclass(frozen=True)
class ModelRef:
    """A model located on disk, with what determines its pixels summarised as a fingerprint."""

    name: str
    path: Path
    source: str  # "builtin", "local" or "hub"
    fingerprint: str
    defaults: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # A single-file checkpoint (genbatch.pipelines.checkpoints): the file; ``path`` is then its config folder.
    checkpoint: Path | None = None
    a1111_hash: str | None = None  # A1111's "Model hash": the file's sha256, first 10 hex digits
    vae: Path | None = None  # --vae: a VAE that replaces the pipeline's

    @property
    def id(self) -> str:
        """What tells two models apart in one run: their weights' fingerprint and where they are."""
        return self.fingerprint + str(self.path)

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
        """Its diffusers family (genbatch.pipelines.families), ``"?"`` where genbatch knows none."""
        from genbatch.pipelines.families import folder_family

        found = folder_family(self.path)
        return found.name if found else "?"


def resolve_model(spec: str | None, *, config: str | None = None, vae: str | None = None) -> ModelRef:
    """Turn ``--model`` (built-in name, folder, hub id in the local cache, or a single-file
    checkpoint with ``config``, its pipeline folder or hub id) into a ModelRef; ``vae``
    replaces its VAE (genbatch.pipelines.checkpoints)."""
    model = _resolve(spec, config)
    if not vae:
        return model
    vae_path = Path(vae).expanduser()
    is_hub_id = vae.count("/") == 1 and not vae.startswith((".", "/", "~")) and not vae_path.parent.is_dir()
    return with_vae(model, vae, hub_snapshot(vae) if is_hub_id and not vae_path.exists() else None)


def _resolve(spec: str | None, config: str | None) -> ModelRef:
    spec = spec or default_model_name()
    if spec == SHAPES and shapes_path():
        return _ref(SHAPES, PACKAGE_MODELS / SHAPES, "builtin")
    if spec == TINY_RANDOM:
        return _ref(TINY_RANDOM, ensure_tiny_random(), "builtin")
    path = Path(spec).expanduser()
    if path.is_file() and is_checkpoint_file(path):
        check_checkpoint_file(path, config)
        try:
            base = _resolve(config, None)
        except ModelError as err:
            raise ModelError(f"--config {config}: {err}") from None
        return checkpoint_ref(path, base, f"--config {config}")
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
        return _ref(spec, hub_snapshot(spec), "hub")
    raise ModelError(
        f"no model {shown(spec)}: not a built-in name ({', '.join(builtin_names())}), an existing folder, "
        "or a Hugging Face id like 'org/name'"
    )


def _looks_like_path(spec: str) -> bool:
    """A spec that names a file or folder rather than a hub id: it starts like a path, has a
    file extension of a checkpoint, or its first part is a folder here (``models/my-sdxl``)."""
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


def hub_snapshot(repo_id: str) -> Path:
    """The newest snapshot of ``repo_id`` in the local Hugging Face cache; a ModelError
    that says how to fetch it where it is missing."""
    found = cached_snapshot(repo_id)
    if found is None:
        raise ModelError(
            f"model {shown(repo_id)} is not in the local Hugging Face cache and genbatch does not download "
            "while it runs. On a machine with network access run\n"
            f"    {download_command(shlex.quote(shown_bare(repo_id)))}\n"
            "(or copy the cache folder, HF_HOME, to this machine), or pass a local folder with --model."
        )
    return found


def _ref(name: str, path: Path, source: str) -> ModelRef:
    return ModelRef(name=name, path=path, source=source, fingerprint=fingerprint(path), defaults=read_defaults(path))
