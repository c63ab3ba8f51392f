"""Errors a user can act on, and the exit codes they map to.

Exit codes (documented in docs/runs-and-resume.md and tested):

    0    every planned image is on disk
    1    some jobs failed (they are listed in run.json and the ledger)
    2    bad input or usage: invalid manifest, unknown model, unsafe output name, lock held
    130  interrupted by SIGINT (Ctrl-C)
    143  interrupted by SIGTERM
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED_JOBS = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class GenbatchError(Exception):
    """An error whose message is meant for the user, printed without a traceback."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as the format allows."""

    file: str
    line: int | None
    column: str | None
    message: str
    # A fatal problem spoils the whole manifest (no prompt column, unreadable file); the
    # others spoil one row, which --skip-invalid can leave out.
    fatal: bool = False

    def __str__(self) -> str:
        from genbatch.echo import shown_bare  # file and column names come from users' files

        where = shown_bare(self.file, limit=4096)
        if self.line is not None:
            where += f":{self.line}"
        if self.column:
            where += f":{shown_bare(self.column)}"
        return f"{where}: {self.message}"


class ManifestError(GenbatchError):
    """A manifest that cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems]
        count = len(lines)
        head = f"{count} problem{'s' if count != 1 else ''} in the manifest"
        super().__init__(head + ":\n" + "\n".join(lines))


class ModelError(GenbatchError):
    """A model that cannot be found or loaded."""


class LockedError(GenbatchError):
    """Another genbatch run holds the output folder."""
