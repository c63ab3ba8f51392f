"""Building millions of small objects (manifest rows, jobs, ledger entries) at once.

Python's cyclic garbage collector runs after every few hundred new container objects and
each full pass walks every live one, so building a million rows spends more time collecting
(nothing: these objects hold no cycles) than building. :func:`paused_gc` turns it off for
such a stretch; whatever cycles it made are collected at the next pass after it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside the block (nested blocks are fine)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
