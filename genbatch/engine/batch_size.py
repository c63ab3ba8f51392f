"""How many images go into one pipeline call, and what to do when a batch does not fit.

- A batch that runs out of accelerator memory is halved and the same jobs run again, down to
  one image (the seed contract makes the pixels the same in any batch). The size that fit is
  remembered for that model, image size, device and precision: for the rest of the run, and
  in ``$GENBATCH_HOME/batch-sizes.json`` for the next run. A job is lost only when one image
  alone does not fit, and then with that reason.
- ``--batch-size auto`` finds the size: batches grow 1, 2, 4, ... while the time per image
  keeps falling (a batch that is slower per image than the size below it, or that does not
  fit, ends the search) up to ``AUTO_CAP``; the answer is cached beside the remembered fits.
  The batches of the search are real work, not probes.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genbatch.home import genbatch_home
from genbatch.safe_write import write_atomic

AUTO_CAP = 64
STATE_NAME = "batch-sizes.json"


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's ``torch.cuda.OutOfMemoryError``, cuDNN's and cuBLAS's workspace allocation failures,
    MPS's and ONNX Runtime's."""
    text = str(err).lower()
    return type(err).__name__ == "OutOfMemoryError" or any(
        words in text for words in ("out of memory", "failed to allocate memory", "status_alloc_failed")
    )


def size_key(model_fingerprint: str, width: int, height: int, device: str, dtype: str) -> str:
    return f"{model_fingerprint}:{width}x{height}:{device}:{dtype}"


@dataclass
class _Search:
    size: int = 1
    per_image: dict[int, float] = field(default_factory=dict)  # seconds per image at each size tried
    done: bool = False


class BatchSizer:
    """Chooses each batch's size (``requested``: a fixed size, or None for auto)."""

    def __init__(self, requested: int | None, *, state: Path | None = None):
        self.requested = requested
        self.state_path = state if state is not None else genbatch_home() / STATE_NAME
        self.remembered = _read_state(self.state_path)  # key -> {"fits": n, "auto": n}
        self.searches: dict[str, _Search] = {}
        self.used: dict[str, int] = {}  # key -> the largest size that ran in this run
        self._lock = threading.Lock()

    def next_size(self, key: str) -> int:
        """How many of a group's pending jobs the next batch takes."""
        known = self.remembered.get(key, {})
        fits = known.get("fits")
        if self.requested is not None:
            return min(self.requested, fits) if fits else self.requested
        if "auto" in known:
            return min(known["auto"], fits) if fits else known["auto"]
        search = self.searches.setdefault(key, _Search())
        return min(search.size, fits) if fits else search.size

    def ran(self, key: str, size: int, seconds: float) -> None:
        """A batch of ``size`` images took ``seconds``: feeds the auto search."""
        with self._lock:
            self.used[key] = max(self.used.get(key, 0), size)
            search = self.searches.get(key)
            if self.requested is not None or search is None or search.done or size != search.size:
                return
            search.per_image[size] = seconds / size
            below = search.per_image.get(size // 2)
            if below is not None and search.per_image[size] > below:
                self._settle(key, size // 2)
            elif size * 2 > AUTO_CAP:
                self._settle(key, size)
            else:
                search.size = size * 2

    def out_of_memory(self, key: str, size: int) -> int:
        """A batch of ``size`` did not fit: remember that half of it is the most to try."""
        half = max(1, size // 2)
        with self._lock:
            entry = self.remembered.setdefault(key, {})
            entry["fits"] = min(entry.get("fits", half), half)
            search = self.searches.get(key)
            if search is not None and not search.done:
                self._settle(key, half)
            self._save()
        return half

    def _settle(self, key: str, size: int) -> None:
        self.searches[key].done = True
        self.remembered.setdefault(key, {})["auto"] = size
        self._save()

    def _save(self) -> None:
        try:
            write_atomic(self.state_path, (json.dumps(self.remembered, indent=2, sort_keys=True) + "\n").encode())
        except OSError:  # a read-only home: the sizes are still used for this run
            pass

    def describe(self) -> dict[str, Any]:
        return {"requested": self.requested if self.requested is not None else "auto", "used": dict(self.used)}


def _read_state(path: Path) -> dict[str, dict[str, int]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): {n: int(v[n]) for n in ("fits", "auto") if isinstance(v.get(n), int) and v[n] >= 1}
        for k, v in data.items()
        if isinstance(v, dict)
    }
