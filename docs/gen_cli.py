"""Write docs/cli.md from the CLI's own --help, so the reference never drifts from the code.

    python docs/gen_cli.py          # rewrite docs/cli.md
    python docs/gen_cli.py --check  # exit 1 if docs/cli.md is out of date (the test suite does this)

The commands are found by walking the Typer app's registered commands (and any command
groups, recursively), so a new command is documented as soon as it exists.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout's genbatch, whichever one is installed
TARGET = ROOT / "docs" / "cli.md"
WIDTH = 100


def command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """``command`` and every command under it, as their words after ``genbatch``, in the
    order ``--help`` lists them; hidden commands are left out."""
    from typer.core import TyperGroup

    paths = [prefix]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            if not sub.hidden:
                paths.extend(command_paths(sub, (*prefix, name)))
    return paths


def cli_command() -> object:
    """The (Typer-built click) command behind ``genbatch``."""
    import typer.main

    from genbatch.cli.app import app

    return typer.main.get_command(app)


def render() -> str:
    os.environ.update({"COLUMNS": str(WIDTH), "TERM": "dumb", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"})
    from typer.testing import CliRunner

    from genbatch.cli.app import app

    runner = CliRunner()
    parts = ["# genbatch command reference\n", "Generated from `--help` by `python docs/gen_cli.py`; do not edit.\n"]
    for words in command_paths(cli_command()):
        result = runner.invoke(app, [*words, "--help"], prog_name="genbatch", terminal_width=WIDTH)
        if result.exit_code != 0:
            raise SystemExit(f"genbatch {' '.join(words)} --help failed: {result.output}")
        title = " ".join(("genbatch", *words))
        parts.append(f"## `{title}`\n\n```text\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is out of date: run python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
