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
    """Context manager: peak resident memory (RSS) of a process, sampled by a background thread.

    The one peak-RSS sampler of the benchmarks. Without `pid` it watches this process and `delta_mb` is the
    peak above the RSS at entry (what one call added); with `pid` it watches that process plus its children
    (e.g. a `subprocess.Popen`) and `peak_mb` is their summed RSS at its highest.

    Args:
        pid: the process to watch (default: this one).
        interval: seconds between samples.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.002) -> None:
        import psutil

        self._psutil = psutil
        self.process = psutil.Process(pid)
        self.own = pid is None
        self.interval = interval
        self.start = self.peak = 0

    def _rss(self) -> int:
        rss = self.process.memory_info().rss
        if not self.own:
            for child in self.process.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except self._psutil.Error:
                    pass
        return rss

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._rss())
            except self._psutil.Error:  # the watched process has exited
                return
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        if self.own:
            _malloc_trim()
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.peak = max(self.peak, self._rss())
        except self._psutil.Error:
            pass

    @property
    def delta_mb(self) -> float:
        """Peak above the RSS at entry, in MiB."""
        return (self.peak - self.start) / 2**20

    @property
    def peak_mb(self) -> float:
        """Peak RSS, in MiB."""
        return self.peak / 2**20
