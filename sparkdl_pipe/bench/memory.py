"""Peak resident memory of the Python processes Spark starts (workers, Horovod ranks).

Runs on: driver. A background thread samples the driver's process tree; it is stopped and joined
when the ``with`` block ends.
"""

from __future__ import annotations

import os
import threading

import psutil


def _is_python(proc: psutil.Process) -> bool:
    try:
        return "python" in proc.name().lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class PythonWorkerMemory:
    """Samples every ``interval`` s the RSS of Python processes below this one (not itself).

    >>> with PythonWorkerMemory() as mem:  # doctest: +SKIP
    ...     run_scoring(spark, cfg)
    >>> mem.peak_process_mb, mem.peak_total_mb  # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_process_mb = 0.0
        self.peak_total_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        me = psutil.Process(os.getpid())
        total = 0.0
        for child in me.children(recursive=True):
            if not _is_python(child):
                continue
            try:
                rss = child.memory_info().rss / 2**20
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += rss
            self.peak_process_mb = max(self.peak_process_mb, rss)
        self.peak_total_mb = max(self.peak_total_mb, total)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PythonWorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
