"""Rank heartbeats: each Horovod rank says, every few seconds, that it is alive and how far it got.

A daemon thread in the rank writes ``rank-R.json`` (rank, pid, host, process start time, epoch,
batches done, time of the last finished batch) into a directory the driver reads: the ``heartbeats/``
of the run's work directory beside the output, a URL like the output (``file://``, ``hdfs://``,
``s3://``), written through :mod:`sparkdl_pipe.storage` (pyarrow), so the driver and the ranks need
to share no disk, only the storage the model goes to. The driver's
watchdog (:mod:`sparkdl_pipe.driver.watchdog`) ends the job when a rank stops writing (killed,
out of memory, executor lost) or stops making progress (stuck in a collective).

Runs on: executors (Horovod ranks).
"""

from __future__ import annotations

import os
import socket
import threading
import time

from sparkdl_pipe import storage


class Heartbeat:
    """Writes this rank's heartbeat file every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, directory: str, rank: int, interval: float = 2.0) -> None:
        self.url = storage.join(storage.to_url(directory), f"rank-{rank}.json")
        self.rank = rank
        self.interval = interval
        self.epoch = 0
        self.steps = 0
        self.progress_time = time.time()
        self.done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-rank-{rank}", daemon=True)
        try:
            import psutil

            self._started = psutil.Process().create_time()
        except Exception:  # noqa: BLE001 - the start time only guards pid reuse; optional
            self._started = 0.0

    def start(self) -> Heartbeat:
        self._write()
        self._thread.start()
        return self

    def progress(self, epoch: int | None = None) -> None:
        """Record that this rank finished a unit of work (a batch, an evaluation chunk)."""
        if epoch is not None:
            self.epoch = epoch
        self.steps += 1
        self.progress_time = time.time()

    def stop(self) -> None:
        """Stop beating and leave a final record saying this rank finished (the watchdog ignores it)."""
        self._stop.set()
        self.done = True
        try:
            self._write()
        except OSError:
            pass

    def _write(self) -> None:
        doc = {"rank": self.rank, "pid": os.getpid(), "host": socket.gethostname(),
               "process_started": self._started, "time": time.time(), "epoch": self.epoch,
               "steps": self.steps, "progress_time": self.progress_time, "done": self.done}
        storage.write_json(self.url, doc)  # atomic (temp file + rename) on local filesystems

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._write()
            except OSError:
                pass  # a full or vanished directory must not kill training; the driver will notice
