"""Where genbatch keeps state of its own: built models, remembered batch sizes, file hashes,
evaluation references, engine caches. ``GENBATCH_HOME`` moves it."""

from __future__ import annotations

import os
from pathlib import Path


def genbatch_home() -> Path:
    """Where genbatch keeps state of its own (built models). ``GENBATCH_HOME`` moves it."""
    return Path(os.environ.get("GENBATCH_HOME") or Path.home() / ".cache" / "genbatch")
