"""The documentation (README.md, docs/ and mkdocs.yml) stays true and whole."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import typer.main
from typer.core import TyperGroup

from genbatch.cli.app import app

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


def test_readme_is_a_short_front_page():
    size = (ROOT / "README.md").stat().st_size
    assert size < 15_000, f"README.md is {size} bytes; move detail into a page under docs/"


def test_docs_index_is_the_readme_with_links_relative_to_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert index == readme.replace("](docs/", "]("), "docs/index.md is out of date: run make docs"


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_every_docs_page_is_in_the_mkdocs_nav():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(nav) == pages


def test_readme_links_to_docs_pages_that_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert len(links) > 10
    for link in links:
        assert (ROOT / link).is_file(), f"README.md links to {link}, which does not exist"


def test_example_manifest_is_valid():
    from genbatch.manifest.read import read_manifest

    manifest = read_manifest(ROOT / "manifests" / "example.csv")
    assert manifest.problems == [] and len(manifest.rows) >= 12
