"""``genbatch models``: the models usable here without a download (built-ins, the local
Hugging Face cache and given folders), each with its family and whether it runs on the torch
and onnx backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.builtin import (
    DESCRIPTIONS,
    SHAPES,
    builtin_names,
    default_model_name,
    shapes_path,
    tiny_random_path,
)
from genbatch.pipelines.families import read_defaults
from genbatch.pipelines.model_lookup import resolve_model

# What the built-ins are before tiny-random is first built: SD pipelines.
_UNBUILT = {
    "family": "sd",
    "pipeline": "StableDiffusionPipeline",
    "torch": True,
    "onnx": "after genbatch export --to onnx",
    "notes": "",
}


def list_models(folders: list[Path] | tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """Models genbatch can use here without a download: built-ins, the local HF cache and
    ``folders``, each with its family and whether it runs on torch and on onnx
    (:func:`genbatch.pipelines.families.runs_on`: True, or the reason it does not)."""
    from genbatch.pipelines.families import runs_on

    found = [*_folders(folders), *_builtins(), *_hub_cache()]
    for entry in found:
        entry.update(runs_on(Path(entry["path"])) if entry["present"] else _UNBUILT)
    return found


def _entry(name: str, source: str, path: Any, description: str, present: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "source": source,
        "path": str(path),
        "present": present,
        "default": source == "builtin" and name == default_model_name(),
        "description": description,
    }


def _folders(folders: list[Path] | tuple[Path, ...]) -> list[dict[str, Any]]:
    found = []
    for folder in folders:
        ref = resolve_model(str(folder))
        found.append(
            _entry(ref.name, "local", ref.path, ref.defaults.get("description") or "diffusers pipeline folder")
        )
    return found


def _builtins() -> list[dict[str, Any]]:
    found = []
    for name in builtin_names():
        path = shapes_path() if name == SHAPES else tiny_random_path()
        defaults = read_defaults(path) if path and path.exists() else {}
        present = bool(path and (path / "model_index.json").exists())
        found.append(_entry(name, "builtin", path, defaults.get("description") or DESCRIPTIONS[name], present))
    return found


def _hub_cache() -> list[dict[str, Any]]:
    """The diffusers pipelines in the local Hugging Face cache, newest snapshot of each."""
    found: list[dict[str, Any]] = []
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type != "model":
                continue
            revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
            if revisions and (Path(revisions[0].snapshot_path) / "model_index.json").exists():
                description = "diffusers pipeline in the local Hugging Face cache"
                found.append(_entry(repo.repo_id, "hub-cache", revisions[0].snapshot_path, description))
    except Exception:  # no cache folder yet, or an unreadable one: nothing to list
        pass
    return found
