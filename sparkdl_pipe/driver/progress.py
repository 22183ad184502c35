"""Seeing the work on the driver's console: rank-0 training progress and Spark stage progress.

Runs on: driver.

- :class:`RankOutputRelay` is the stream handed to ``horovod.spark.run(stdout=...)``: Horovod relays
  every rank's stdout to it over its task-service socket (local mode and cluster alike). Lines
  carrying rank 0's ``SPARKDL_PROGRESS`` records are printed as one readable line per epoch; the
  rest of the ranks' output goes to this module's logger at DEBUG.
- :class:`StageProgress` polls Spark's ``StatusTracker`` from a daemon thread and prints each
  active stage's task counts when they change (the ingest and scoring jobs, the Estimator).
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from typing import TextIO

from sparkdl_pipe.executor.callbacks import parse_progress_line

log = logging.getLogger(__name__)


def format_epoch(rec: dict) -> str:
    """One console line for an epoch record from rank 0."""
    val = (f" | val loss {rec['val_loss']:.4f} acc {rec['val_accuracy']:.4f}"
           if rec.get("val_accuracy") is not None else "")
    return (f"[train] epoch {rec['epoch']}/{rec['epochs']}: loss {rec['loss']:.4f} acc {rec['accuracy']:.4f}"
            f"{val} | {rec['samples_per_s']:.0f} samples/s | {rec['seconds']:.1f}s/epoch, "
            f"~{rec['eta_s']:.0f}s left")


class RankOutputRelay(io.TextIOBase):
    """A text stream for Horovod's relayed rank stdout; collects and prints progress records.

    Thread-safe: Horovod writes each rank's output from its own thread.
    """

    def __init__(self, out: TextIO | None = None, echo: bool = True) -> None:
        super().__init__()
        self._out = out
        self._echo = echo
        self._buf = ""
        self._lock = threading.Lock()
        self.records: list[dict] = []

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:  # type: ignore[override]
        with self._lock:
            self._buf += s
            *lines, self._buf = self._buf.split("\n")
            for line in lines:
                self._line(line)
        return len(s)

    def _line(self, line: str) -> None:
        rec = parse_progress_line(line)
        if rec is None:
            if line.strip():
                log.debug("rank output: %s", line.rstrip())
            return
        self.records.append(rec)
        if rec.get("event") == "start":
            text = (f"[train] {rec['ranks']} ranks x {rec['steps_per_epoch']} steps/epoch x batch "
                    f"{rec['batch_size']}, {rec['epochs']} epochs")
        elif rec.get("event") == "epoch":
            text = format_epoch(rec)
        else:
            return
        log.info(text)
        if self._echo:
            out = self._out or sys.stderr
            print(text, file=out, flush=True)

    def epochs(self) -> list[dict]:
        """The epoch records seen so far."""
        return [r for r in self.records if r.get("event") == "epoch"]

    def close(self) -> None:  # Horovod closes the stream when a rank's output ends; keep it usable
        with self._lock:
            if self._buf:
                self._line(self._buf)
                self._buf = ""


class StageProgress:
    """Print Spark stage progress (``[ingest] stage 4 mapInPandas: 3/8 tasks``) while a job runs.

    >>> with StageProgress(spark, "ingest"):  # doctest: +SKIP
    ...     run_ingest_images(spark, cfg)
    """

    def __init__(self, spark, label: str, interval: float = 2.0, out: TextIO | None = None) -> None:
        self._sc = spark.sparkContext
        self._label = label
        self._interval = interval
        self._out = out
        self._stop = threading.Event()
        self._seen: dict[int, tuple[int, int]] = {}
        self._thread = threading.Thread(target=self._run, name=f"sparkdl-progress-{label}", daemon=True)
        self.lines: list[str] = []

    def __enter__(self) -> StageProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        tracker = self._sc.statusTracker()
        for sid in tracker.getActiveStageIds():
            info = tracker.getStageInfo(sid)
            if info is None:
                continue
            state = (info.numCompletedTasks, info.numTasks)
            if self._seen.get(sid) != state:
                self._seen[sid] = state
                name = info.name.split(" at ")[0]
                line = f"[{self._label}] stage {sid} {name}: {state[0]}/{state[1]} tasks"
                self.lines.append(line)
                print(line, file=self._out or sys.stderr, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._poll()
            except Exception as e:  # noqa: BLE001 - progress display must never break the job
                log.debug("stage progress poll failed: %s", e)
                return
