"""A short memory of the node's live figures, for the dashboard's chart.

The counters behind /status and /metrics hold only the present; a chart needs the recent past.
A daemon thread samples them every few seconds into a fixed-size ring (an hour at the defaults),
so memory stays bounded however long the node runs and nothing is written to disk: the history
starts afresh with each run, like the counters it samples. It reads the service only through
views.live, which never touches the chain, so a slow RPC cannot stall sampling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hearth_node import views

log = logging.getLogger("hearth.node.history")

INTERVAL = 5.0  # seconds between samples
SIZE = 720  # samples kept: one hour at INTERVAL


@dataclass(frozen=True)
class Sample:
    """The live figures at one moment (t: Unix time, seconds)."""

    t: float
    tokens_per_second: float
    queue_depth: int
    jobs: dict[str, int]
    earnings_tokens: float
    tokens_generated: int = 0


def take(svc: Any, clock: Callable[[], float] = time.time) -> Sample:
    """A sample of the service's figures now (missing parts read as zero)."""
    v = views.live(svc)
    return Sample(t=clock(), tokens_per_second=v["tokens_per_second"], queue_depth=v["queue_depth"],
                  jobs=dict(v["jobs"]), earnings_tokens=v["earnings_tokens"], tokens_generated=v["tokens_generated"])


class History:
    """A ring of samples of one service, filled by a daemon thread between start() and stop()."""

    def __init__(self, svc: Any, interval: float = INTERVAL, size: int = SIZE,
                 clock: Callable[[], float] = time.time) -> None:
        self.svc = svc
        self.interval = interval
        self.clock = clock
        self._ring: deque[Sample] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, sample: Sample) -> None:
        """Record a sample (the oldest falls out once the ring is full)."""
        with self._lock:
            self._ring.append(sample)

    def sample(self) -> Sample | None:
        """Take and record a sample now; None if the service could not be read."""
        try:
            s = take(self.svc, self.clock)
        except Exception:  # noqa: BLE001  (a journal closing under us, a runner mid-swap: try next tick)
            log.debug("history sample failed", exc_info=True)
            return None
        self.add(s)
        return s

    def samples(self, since: float | None = None) -> list[dict[str, Any]]:
        """Recorded samples, oldest first, those after `since` only if given, as JSON-ready dicts."""
        with self._lock:
            ring = list(self._ring)
        return [asdict(s) for s in ring if since is None or s.t > since]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> None:
        """Start sampling (the first sample at once, so a fresh dashboard has a point to show)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="history", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling; the samples taken stay readable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
