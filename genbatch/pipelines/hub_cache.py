"""The local Hugging Face cache: a repository's newest snapshot there, and the command that
fetches one. genbatch never downloads while it runs."""

from __future__ import annotations

from pathlib import Path


def cached_snapshot(repo_id: str) -> Path | None:
    """The newest snapshot of ``repo_id`` in the local Hugging Face cache; None where it is missing."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or not a valid id: the caller says what to do
        return None


def download_command(repo_id: str) -> str:
    """The download command the installed huggingface_hub has: ``hf`` (since 0.34), else the
    older ``huggingface-cli``."""
    from importlib.util import find_spec

    try:
        has_hf = find_spec("huggingface_hub.cli.hf") is not None
    except ModuleNotFoundError:
        has_hf = False
    return f"{'hf' if has_hf else 'huggingface-cli'} download {repo_id}"
