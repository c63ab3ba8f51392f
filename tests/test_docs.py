"""The documentation the README promises stays true."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_generated_from_current_help():
    result = subprocess.run([sys.executable, "docs/gen_cli.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_names_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_example_manifest_is_valid():
    from genbatch.manifest import read_manifest

    manifest = read_manifest(ROOT / "manifests" / "example.csv")
    assert manifest.problems == [] and len(manifest.rows) >= 12
