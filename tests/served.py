"""What the test proxies share: serving in a background thread, as a context manager, with
thread-safe event counts."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Self


class Served:
    """A server run by `_thread`; subclasses set it up and say how to `stop`."""

    _thread: threading.Thread
    counts: Counter[str]
    _lock: threading.Lock

    def start(self) -> Self:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, key: str) -> int:
        """Count one `key` event; returns the new count (handler threads run at once)."""
        with self._lock:
            self.counts[key] += 1
            return self.counts[key]
