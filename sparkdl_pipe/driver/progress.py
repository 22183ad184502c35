"""Seeing the work on the driver's console: rank-0 training progress and Spark stage progress.

Runs on: driver.

- :class:`ProgressServer` listens on a TCP port for the duration of a training run; rank 0
  connects to it (address ``spark.driver.host``:port, passed in the rank's parameters) and sends
  one JSON line per epoch, printed here at once as a readable line. See
  :mod:`sparkdl_pipe.executor.callbacks` for why this channel and not Horovod's stdout relay.
  Only lines that parse as progress records are used; anything else is ignored.
- :class:`ProgressPrinter` turns those records into console lines (also usable as a text stream).
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
    short = {"accuracy": "acc"}
    train = " ".join(f"{short.get(k, k)} {rec[k]:.4f}" for k in ("loss", "accuracy", "mae")
                     if rec.get(k) is not None)
    val = " ".join(f"{short.get(k[4:], k[4:])} {rec[k]:.4f}" for k in ("val_loss", "val_accuracy", "val_mae",
                                                                          "val_rmse", "val_r2")
                   if rec.get(k) is not None)
    val = f" | val {val}" if val else ""
    return (f"[train] epoch {rec['epoch']}/{rec['epochs']}: {train}"
            f"{val} | {rec['samples_per_s']:.0f} samples/s | {rec['seconds']:.1f}s/epoch, "
            f"~{rec['eta_s']:.0f}s left")


class ProgressPrinter(io.TextIOBase):
    """Collects progress records from text (a line at a time, or any chunks) and prints them.

    Thread-safe: lines may come from several connection threads.
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
        log.debug(text)
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
                name = "" if name.startswith("$") else f" {name}"  # Scala closure names say nothing
                line = f"[{self._label}] stage {sid}{name}: {state[0]}/{state[1]} tasks"
                self.lines.append(line)
                print(line, file=self._out or sys.stderr, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._poll()
            except Exception as e:  # noqa: BLE001 - progress display must never break the job
                log.debug("stage progress poll failed: %s", e)
                return


class ProgressServer:
    """A TCP server on the driver that rank 0 streams progress lines to, for one training run.

    >>> with ProgressServer("10.0.0.5") as srv:  # doctest: +SKIP
    ...     params["progress_address"] = srv.address
    ...     horovod.spark.run(...)
    """

    def __init__(self, host: str, out: TextIO | None = None, echo: bool = True) -> None:
        import socket

        self.printer = ProgressPrinter(out=out, echo=echo)
        self._sock = socket.create_server(("", 0))
        self._sock.settimeout(0.5)
        self.address = (host, self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="sparkdl-progress-server", daemon=True)

    def __enter__(self) -> ProgressServer:
        self._accept.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._accept.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)  # rank 0 closed its end when training ended; drain what it sent
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._read, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self, conn) -> None:
        with conn, conn.makefile("r", encoding="utf-8", errors="replace") as f:
            for line in f:  # blocks until a line or the peer closes
                self.printer.write(line)

    def epochs(self) -> list[dict]:
        return self.printer.epochs()
