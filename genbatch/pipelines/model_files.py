"""What a model folder says of itself, read without loading weights: its fingerprint, its
defaults (genbatch.json, the family's usual values), its own timesteps, whether it is an ONNX
export. Planning (``--dry-run``, job keys) needs only these."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from genbatch.errors import ModelError

_HASH_CHUNK = 1 << 20
EXPORT_INFO = "genbatch_export.json"  # written by genbatch export beside an ONNX export


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
    """Feed a file to ``digest``: whole when small, else its size and first and last MiB.
    Opened without blocking and read only when it is a regular file (a named pipe put in
    its place would otherwise block forever); raises OSError if it is not."""
    descriptor = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(file))
        size = info.st_size
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
