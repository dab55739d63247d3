"""Helpers shared by the benchmark scripts: progress logging and a peak-RSS sampler."""

from __future__ import annotations

import sys
import threading
import time


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _malloc_trim() -> None:
    """Give memory freed by earlier runs back to the OS (glibc keeps it), so the next RSS delta is visible."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: deltas may under-count memory reused from earlier runs
        pass


class PeakRSS:
    """Context manager: peak RSS (bytes) above the RSS at entry, sampled by a background thread."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        _malloc_trim()
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.start) / 2**20
