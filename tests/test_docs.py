"""The documentation the README promises stays true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import typer.main
from typer.core import TyperGroup

from genbatch.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_generated_from_current_help():
    result = subprocess.run([sys.executable, "docs/gen_cli.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _commands(command, words: tuple[str, ...] = ()):
    yield words, command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            if not sub.hidden:
                yield from _commands(sub, (*words, name))


def test_cli_reference_documents_every_command_and_option():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `([^`]+)`\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    commands = list(_commands(typer.main.get_command(app)))

    assert len(commands) > 5  # the app and its commands
    assert len(sections) == len(commands)
    for words, command in commands:
        title = " ".join(("genbatch", *words))
        assert title in sections, f"docs/cli.md has no section for {title}"
        for param in command.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                names = [*param.opts, *param.secondary_opts]
                assert any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", sections[title]) for n in names), (
                    f"docs/cli.md does not document {title} {names[0]}"
                )


def test_readme_names_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_example_manifest_is_valid():
    from genbatch.manifest import read_manifest

    manifest = read_manifest(ROOT / "manifests" / "example.csv")
    assert manifest.problems == [] and len(manifest.rows) >= 12
