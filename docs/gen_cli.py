"""Write docs/cli.md from the CLI's own --help, so the reference never drifts from the code.

    python docs/gen_cli.py          # rewrite docs/cli.md
    python docs/gen_cli.py --check  # exit 1 if docs/cli.md is out of date (the test suite does this)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

COMMANDS = ["run", "validate", "export", "report", "merge", "models"]
TARGET = Path(__file__).with_name("cli.md")


def render() -> str:
    os.environ.update({"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"})
    from typer.testing import CliRunner

    from genbatch.cli import app

    runner = CliRunner()
    parts = ["# genbatch command reference\n", "Generated from `--help` by `python docs/gen_cli.py`; do not edit.\n"]
    for args in ([], *([c] for c in COMMANDS)):
        result = runner.invoke(app, [*args, "--help"], prog_name="genbatch", terminal_width=100)
        title = "genbatch " + " ".join(args) if args else "genbatch"
        parts.append(f"## `{title}`\n\n```text\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        if TARGET.read_text(encoding="utf-8") != text:
            sys.exit(f"{TARGET} is out of date: run python docs/gen_cli.py")
    else:
        TARGET.write_text(text, encoding="utf-8")
