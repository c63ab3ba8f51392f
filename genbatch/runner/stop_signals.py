"""What SIGINT and SIGTERM do to a run: the first finishes the batch in flight and exits
130/143 after flushing; the second stops at once."""

from __future__ import annotations

import signal
import threading
from typing import Any

from genbatch.errors import EXIT_SIGINT, EXIT_SIGTERM


class StopSignals:
    """SIGINT/SIGTERM once: finish the batch in flight, flush, exit 130/143. Twice: stop now."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int | None:
        if self.signal is None:
            return None
        return EXIT_SIGTERM if self.signal == signal.SIGTERM else EXIT_SIGINT
