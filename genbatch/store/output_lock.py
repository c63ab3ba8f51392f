"""One run per output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from genbatch.errors import GenbatchError, LockedError
from genbatch.safe_write import UnsafePathError, contained

LOCK_NAME = ".genbatch.lock"


class OutputFolderLock:
    """One run per output folder: an OS file lock (a killed run never leaves it held). A run
    that made the folder and wrote nothing (bad input, a model that failed to load) removes
    it again, so bad input leaves no trace."""

    def __init__(self, out: Path, *, wait: bool):
        self.out, self.wait = out, wait
        self.created = False
        self.lock: FileLock | None = None

    def __enter__(self) -> OutputFolderLock:
        out = self.out
        if out.exists() and not out.is_dir():
            raise GenbatchError(f"--out {out}: exists and is not a folder")
        while True:
            self.created = self.created or not out.exists()
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise GenbatchError(f"--out {out}: cannot create the folder: {err.strerror}") from None
            path = out / LOCK_NAME
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise UnsafePathError(
                    f"{path} is not a plain file (a symlink or a folder); genbatch keeps its lock there: remove it"
                )
            contained(out, LOCK_NAME)
            self.lock = FileLock(str(path), timeout=-1 if self.wait else 0)
            try:
                self.lock.acquire()
                return self
            except FileNotFoundError:
                continue  # the run we waited for removed the folder it had made: make it again
            except Timeout:
                raise LockedError(
                    f"another genbatch run is writing to {out} (it holds {path}); "
                    "wait for it to finish, or pass --wait to start when it does"
                ) from None
            except OSError as err:
                raise GenbatchError(f"--out {out}: cannot take the lock {path}: {err.strerror}") from None

    def __exit__(self, *exc: Any) -> None:
        assert self.lock is not None
        untouched = self.created and [p.name for p in self.out.iterdir()] == [LOCK_NAME]
        if untouched:
            (self.out / LOCK_NAME).unlink()
        self.lock.release()
        if untouched:
            try:
                self.out.rmdir()
            except OSError:  # a waiting run took the folder meanwhile
                pass
