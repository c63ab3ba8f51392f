"""Building millions of small objects (manifest rows, jobs, ledger entries) at once.

Python's cyclic garbage collector runs after every few hundred new container objects and
each full pass walks every live one, so building a million rows spends more time collecting
(nothing: these objects hold no cycles) than building. :func:`paused_gc` turns it off for
such a stretch. After a stretch that made many objects, they are moved to the collector's
permanent generation (``gc.freeze``): a plan's rows and jobs live as long as the run, and
without that the first pass after the stretch, and each full pass later, would walk them
all again (about a second per million). Objects are still freed as usual when no longer
referenced; only a reference cycle made and dropped inside such a stretch stays until exit.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

FREEZE_AFTER = 100_000  # new container objects in one stretch above which they are frozen


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside the block (nested blocks are fine)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_count()[0] > FREEZE_AFTER:
                gc.freeze()
            gc.enable()
