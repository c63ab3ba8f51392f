"""Per-image results of one network, kept under ``OUT/.genbatch-eval/`` so a second
evaluation computes only the images it has not seen.

One folder per network, named by the network's fingerprint (its weights' hash), holding
append-only chunk files ``NNNNNN.npz`` of ``ids`` (job key + file hash) and ``values``
(one row per image). A chunk is written atomically after every few batches, so an
interrupted evaluation keeps what it computed; too many chunks are merged into one.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from genbatch.safe_write import remove, write_atomic

CACHE_DIR = ".genbatch-eval"
MERGE_ABOVE = 32  # chunks; more are merged into one when the cache is opened


def cache_folder(out: Path, network: str, fingerprint: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", network)
    return Path(out) / CACHE_DIR / f"{safe}-{fingerprint[:16]}"


def _save(root: Path, path: Path, ids: list[str], values: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, ids=np.array(ids, dtype=str), values=values)
    write_atomic(path, buffer.getvalue(), root=root)


class FeatureCache:
    """``get`` the rows of known ids, ``add`` new rows, ``flush`` them to disk."""

    def __init__(self, out: Path, folder: Path):
        self.out, self.folder = Path(out), Path(folder)
        self._rows: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        chunks = sorted(self.folder.glob("[0-9]*.npz"))
        for chunk in chunks:
            try:
                with np.load(chunk) as data:
                    self._rows.update(zip(data["ids"].tolist(), data["values"]))
            except (OSError, ValueError, KeyError):
                continue  # an unreadable chunk only costs recomputing its images
        self._next = int(chunks[-1].stem) + 1 if chunks else 0
        if len(chunks) > MERGE_ABOVE and self._rows:
            ids = list(self._rows)
            merged = self.folder / f"{self._next:06d}.npz"
            _save(self.out, merged, ids, np.stack([self._rows[i] for i in ids]))
            self._next += 1
            for chunk in chunks:
                remove(self.out, chunk)

    def __contains__(self, cache_id: str) -> bool:
        return cache_id in self._rows

    def get(self, ids: list[str]) -> np.ndarray:
        return np.stack([self._rows[i] for i in ids]) if ids else np.zeros((0, 0), np.float32)

    def add(self, ids: list[str], values: np.ndarray) -> None:
        for cache_id, row in zip(ids, values):
            self._rows[cache_id] = row
            self._pending[cache_id] = row

    def flush(self) -> None:
        if not self._pending:
            return
        ids = list(self._pending)
        _save(self.out, self.folder / f"{self._next:06d}.npz", ids, np.stack([self._pending[i] for i in ids]))
        self._next += 1
        self._pending.clear()
