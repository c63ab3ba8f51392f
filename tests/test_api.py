"""genbatch as a library: what ``import genbatch`` offers, used the way a script would use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import images, ledger

import genbatch


def _options(manifest: Path, out: Path, **plan) -> genbatch.RunOptions:
    return genbatch.RunOptions(
        genbatch.InputOptions(str(manifest)),
        genbatch.OutputOptions(out, html_report=False),
        genbatch.PlanOptions(model="tiny-random", defaults=genbatch.Defaults(steps=2), **plan),
        quiet=True,
    )


def test_a_script_runs_reruns_verifies_and_merges(tmp_path):
    manifest = tmp_path / "prompts.csv"
    manifest.write_text("prompt\n" + "".join(f"a red circle {i}\n" for i in range(8)), encoding="utf-8")
    assert len(genbatch.read_manifest(str(manifest)).rows) == 8

    first = genbatch.run(_options(manifest, tmp_path / "a", shard=(1, 2)))
    second = genbatch.run(_options(manifest, tmp_path / "b", shard=(2, 2)))
    assert first.exit_code == second.exit_code == 0
    assert first.summary.counts.done + second.summary.counts.done == 8
    assert first.summary.counts.done and second.summary.counts.done

    again = genbatch.run(_options(manifest, tmp_path / "a", shard=(1, 2)))
    assert again.summary.counts.done == 0 and again.summary.counts.already_done == first.summary.counts.done

    assert genbatch.verify(tmp_path / "a").ok and genbatch.verify(tmp_path / "b").ok
    merged = genbatch.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "all")
    assert len(images(tmp_path / "all")) == 8 and len(ledger(tmp_path / "all")) == 8
    assert merged is not None


def test_bad_options_are_genbatch_errors_before_anything_runs(tmp_path):
    with pytest.raises(genbatch.GenbatchError, match="--batch-size 0"):
        genbatch.EngineOptions(batch_size=0)
    with pytest.raises(genbatch.GenbatchError, match="--offload"):
        genbatch.TorchOptions(offload="disk")
    with pytest.raises(genbatch.GenbatchError, match="--ray-workers"):
        genbatch.RayOptions(workers=0)
    with pytest.raises(genbatch.GenbatchError, match="--engine ray"):
        genbatch.EngineOptions(ray=genbatch.RayOptions())


def test_the_public_names_are_listed_and_importing_genbatch_loads_no_model_library():
    assert set(genbatch.__all__) <= set(dir(genbatch))
    for name in genbatch.__all__:
        assert getattr(genbatch, name) is not None
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, genbatch; print(sorted({'torch', 'diffusers', 'pandas'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_python_dash_m_genbatch_is_the_command():
    shown = subprocess.run([sys.executable, "-m", "genbatch", "--version"], capture_output=True, text=True)
    assert shown.returncode == 0 and genbatch.__version__ in shown.stdout


def test_the_python_api_page_runs_as_written(tmp_path, monkeypatch):
    """docs/python-api.md's example, run as a user would paste it (in a folder with prompts.csv)."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text(encoding="utf-8")
    example = page.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "prompts.csv").write_text("prompt,seed\na red circle,1\na blue square,2\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/python-api.md", "exec"), {})
    assert len(images(tmp_path / "images")) == 2
