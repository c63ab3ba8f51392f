"""Shared fixtures. The suite never touches a user's genbatch state: GENBATCH_HOME points at
one temporary folder per test session (so the tiny model is built once, not per test)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The S3 API server of the object-storage tests (``s3_server``, ``s3``): tests/s3_server.py.
pytest_plugins = ["s3_server"]

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# torch's OpenMP threads sleep when idle instead of spinning. The suite runs several torch
# processes at once (subprocess CLIs, Ray workers, pytest-xdist workers) on a few cores, where
# spinning threads take the CPU from the ones with work: the same tests took ~4x the wall time.
# The thread count, and with it every pixel, stays as it is. Set before anything imports torch
# (libgomp reads it when it loads); subprocesses and Ray workers inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def genbatch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("genbatch-home")


@pytest.fixture(autouse=True)
def _isolated_home(genbatch_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENBATCH_HOME", str(genbatch_home))
    return genbatch_home


@pytest.fixture(scope="session")
def tiny_model(genbatch_home: Path) -> Path:
    """The tiny noise model's folder, built once per session."""
    previous = os.environ.get("GENBATCH_HOME")
    os.environ["GENBATCH_HOME"] = str(genbatch_home)
    try:
        from genbatch.pipelines.builtin import ensure_tiny_random

        return ensure_tiny_random()
    finally:
        if previous is None:
            os.environ.pop("GENBATCH_HOME", None)
        else:
            os.environ["GENBATCH_HOME"] = previous


@pytest.fixture(scope="session")
def tiny_family(genbatch_home: Path):
    """``tiny_family("flux")``: the folder of a tiny random pipeline of that family
    (genbatch.pipelines.tiny_models), built once per session."""
    from genbatch.pipelines.tiny_builds import build_tiny

    built: dict[str, Path] = {}

    def folder(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny(family, genbatch_home / "tiny-families" / family)
        return built[family]

    return folder


@pytest.fixture(scope="session")
def shard_runs(tmp_path_factory: pytest.TempPathFactory, genbatch_home: Path) -> Path:
    """Two shards (``--shard 1/2`` and ``2/2``) of an eight-row manifest, run once for the session
    into ``shard1/`` and ``shard2/`` beside it (``p.txt``); tests take copies (``shards``)."""
    from helpers import FAST, genbatch

    folder = tmp_path_factory.mktemp("shards")
    manifest = folder / "p.txt"
    manifest.write_text("".join(f"a shape number {i}\n" for i in range(8)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENBATCH_HOME", str(genbatch_home))
        for number in (1, 2):
            out = folder / f"shard{number}"
            assert genbatch("run", manifest, "--out", out, *FAST, "--shard", f"{number}/2").exit_code == 0
    return folder


@pytest.fixture
def shards(tmp_path: Path, shard_runs: Path) -> list[Path]:
    """Copies of the two shard folders of ``shard_runs``, for a test to change."""
    outs = [tmp_path / "shard1", tmp_path / "shard2"]
    for out in outs:
        shutil.copytree(shard_runs / out.name, out)
    return outs
