"""The resume scan (:func:`genbatch.store.ledger.done_index`) begun before the manifest is read, in a
process of its own, so that on a second core it overlaps reading and planning.

Scanning a ledger of 100,000 images (about 100 MB of JSON lines, each parsed and checked,
each image's size confirmed on disk) takes a few seconds of one core; reading and planning a
million-row manifest takes longer, on the other. A forked child inherits everything it
needs, computes the same index with the same function and sends back only the index (a few
hundred bytes an image). Small ledgers are scanned in this process when the result is asked
for (a process costs more than it saves there), and so is every ledger on systems other than
Linux, where ``fork`` is unsafe (macOS) or missing (Windows).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genbatch.store.ledger import done_index, ledger_path

IN_BACKGROUND_BYTES = 8 * 2**20  # a ledger larger than this (~8,000 images) is scanned beside the plan

DoneIndex = dict[str, dict[str, Any]]


@contextmanager
def done_index_soon(out: Path) -> Iterator[Callable[[], DoneIndex]]:
    """Yields a function that returns ``done_index(out)``, begun at once in a forked process
    for a large ledger. Leaving the block stops a scan whose result was never asked for."""
    try:
        large = ledger_path(out).stat().st_size > IN_BACKGROUND_BYTES
    except OSError:
        large = False
    if not large or not sys.platform.startswith("linux"):  # fork is unsafe on macOS, absent on Windows
        yield lambda: done_index(out)
        return
    # Ctrl-C reaches the whole process group: the child leaves it to the run (no traceback of its own)
    ignore_sigint = (signal.SIGINT, signal.SIG_IGN)
    pool = multiprocessing.get_context("fork").Pool(1, initializer=signal.signal, initargs=ignore_sigint)

    def stop() -> None:  # the child's work is done, or no longer wanted
        pool.terminate()
        pool.join()

    pending = pool.apply_async(done_index, (Path(out),))

    def result() -> DoneIndex:
        try:
            return pending.get()
        finally:
            stop()

    try:
        yield result
    finally:
        stop()
