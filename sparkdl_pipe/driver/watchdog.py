"""Running the Horovod ranks so that a lost rank ends the job quickly, with a message naming it.

How a lost rank shows up (measured on this stack, horovod 0.28.1 + Gloo on Spark 4.0):

* A rank *process* that dies (``kill -9``, the kernel's OOM killer, a crash): Horovod's Gloo
  launcher sees its exit status, terminates the other ranks and ``horovod.spark.run`` raises
  ``RuntimeError(... Process name: R / Exit code: C)`` within seconds. Over MPI, mpirun does the
  same but names the rank only in what it prints (``process rank R ... exited on signal N``), so its
  stderr is kept (the last 64 KiB) and read too. We turn that into one line naming the rank, the
  cause read from the exit status, and its last heartbeat.
* A rank that is alive but stuck (stopped, swapping to death, its host unreachable, a collective
  waiting on a peer that vanished without closing its socket): nothing in Horovod ends this in
  bounded time except Gloo's own timeout. So every rank writes a heartbeat
  (:mod:`sparkdl_pipe.executor.heartbeat`) and this watchdog ends the job when a rank has not
  written one, or not finished a batch, for ``rank_timeout`` seconds: it cancels the Spark job
  (which ends the tasks hosting the ranks), stops the rank processes it can see on this host by
  their PIDs, and raises :class:`TrainingError`. ``HOROVOD_GLOO_TIMEOUT_SECONDS`` is set to that
  bound plus 30 s, as a backstop for collectives waiting on a lost peer (Gloo only; over MPI, the
  watchdog's SIGKILL of a stuck rank makes mpirun end the others).

Runs on: driver.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from sparkdl_pipe import storage
from sparkdl_pipe.errors import TrainingError

log = logging.getLogger(__name__)

_SIGNALS = {9: "SIGKILL: killed with kill -9 or by the kernel's out-of-memory killer",
            15: "SIGTERM: terminated", 11: "SIGSEGV: crashed (segmentation fault)", 6: "SIGABRT: aborted",
            7: "SIGBUS: crashed (bus error)"}


#: Seconds beyond --rank-timeout before a rank that is alive but makes no progress is reported.
STALL_GRACE = 5.0


def describe_exit(code: int) -> str:
    """A cause for a rank's exit status (shell style 128+N or Python's -N for signal N).

    >>> describe_exit(137)
    "exit status 137 (SIGKILL: killed with kill -9 or by the kernel's out-of-memory killer)"
    """
    sig = -code if code < 0 else code - 128 if code > 128 else None
    if sig is not None:
        what = _SIGNALS.get(sig, f"signal {sig}")
        return f"exit status {code} ({what})"
    if code == 1:
        return "exit status 1 (an error in the training code: see the rank's log above)"
    return f"exit status {code}"


@dataclass(frozen=True)
class RankBeat:
    rank: int
    pid: int
    host: str
    process_started: float
    time: float
    epoch: int
    steps: int
    progress_time: float
    done: bool = False

    def where(self) -> str:
        return f"rank {self.rank} (pid {self.pid} on {self.host})"


def read_beats(directory: str) -> dict[int, RankBeat]:
    """The latest heartbeat of each rank that has written one (``directory``: a path or URL)."""
    out: dict[int, RankBeat] = {}
    url = storage.to_url(directory)
    try:
        names = [n for n in storage.list_names(url) if re.fullmatch(r"rank-\d+\.json", n)]
    except OSError as e:  # storage briefly unreachable: judge again next round
        log.debug("cannot list heartbeats in %s: %s", url, e)
        return out
    for name in names:
        try:
            d = storage.read_json(storage.join(url, name))
            out[int(d["rank"])] = RankBeat(int(d["rank"]), int(d["pid"]), str(d["host"]),
                                           float(d.get("process_started", 0)), float(d["time"]),
                                           int(d.get("epoch", 0)), int(d.get("steps", 0)),
                                           float(d.get("progress_time", d["time"])), bool(d.get("done")))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced right now; read again next round
    return out


def stalled_rank(beats: dict[int, RankBeat], timeout: float, now: float | None = None) -> str | None:
    """A message for the first rank that stopped beating or progressing for ``timeout`` s, else None."""
    now = time.time() if now is None else now
    live = [beats[r] for r in sorted(beats) if not beats[r].done]
    # A silent rank first: it is the cause; the others then only wait for it in a collective.
    for b in live:
        if now - b.time > timeout:
            return (f"{b.where()} sent no heartbeat for {now - b.time:.0f}s (limit --rank-timeout {timeout:g}s): "
                    f"the process was killed, frozen, ran out of memory, or its executor was lost; last seen in "
                    f"epoch {b.epoch} after {b.steps} batches")
    # Progress is judged from the first batch on, and with a grace of a few heartbeat intervals, so a
    # rank that went silent is always named before the ranks that wait for it.
    for b in live:
        if b.steps and now - b.progress_time > timeout + STALL_GRACE:
            return (f"{b.where()} is alive but finished no batch for {now - b.progress_time:.0f}s (limit "
                    f"--rank-timeout {timeout:g}s): stuck in epoch {b.epoch}, probably waiting in a collective "
                    "for a rank that is gone")
    return None


def _stop_local_ranks(beats: dict[int, RankBeat]) -> list[int]:
    """SIGKILL the rank processes on this host, by PID (checked against their start time)."""
    import psutil

    killed = []
    for b in beats.values():
        if b.host != socket.gethostname():
            continue
        try:
            p = psutil.Process(b.pid)
            if b.process_started and abs(p.create_time() - b.process_started) > 2.0:
                continue  # the PID was reused by another process
            os.kill(b.pid, signal.SIGKILL)
            killed.append(b.pid)
        except (psutil.Error, OSError):
            continue
    return killed


#: How a launcher names the rank that ended first: Horovod's Gloo launcher ("Process name: 1 /
#: Exit code: 137"), mpirun for an exit status ("Process name: [[12509,1],1] / Exit code: 1") and
#: mpirun for a signal ("process rank 1 with PID 29113 on node h exited on signal 9").
_RANK_EXITS = (
    (re.compile(r"Process name:\s*(?:\[\[\d+,\d+\],)?(\d+)\]?\s*Exit code:\s*(-?\d+)"), 1),
    (re.compile(r"process rank (\d+) with PID \d+ on node \S+ exited on signal (\d+)"), -1),
)


def explain_failure(exc: BaseException, beats: dict[int, RankBeat], launcher_output: str = "") -> str:
    """One line for a failed ``horovod.spark.run``: which rank, what happened, where it was.

    ``launcher_output``: the end of what mpirun printed (it names the rank there, not in its exception).
    """
    text = str(exc)
    for pattern, sign in _RANK_EXITS:
        m = pattern.search(text) or pattern.search(launcher_output)
        if m:
            rank, code = int(m.group(1)), sign * int(m.group(2))
            b = beats.get(rank)
            where = b.where() if b else f"rank {rank}"
            seen = f"; its last heartbeat was in epoch {b.epoch} after {b.steps} batches" if b else ""
            return f"{where} ended with {describe_exit(code)}{seen}. Horovod stopped the other ranks"
    last = text.strip().splitlines()[-1] if text.strip() else ""
    return f"Horovod training failed: {type(exc).__name__}: {last[-1500:]}"


class _Tail:
    """A text stream that passes everything on to ``out`` and keeps the last ``limit`` characters."""

    def __init__(self, out, limit: int = 65536) -> None:
        self.out, self.limit, self.kept = out, limit, ""
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.kept = (self.kept + text)[-self.limit:]
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def run_ranks(spark, fn, params: Any, num_proc: int, env: dict, heartbeat_dir: str, rank_timeout: float,
              start_timeout: int = 600, poll: float = 1.0, transport: str = "gloo") -> list:
    """``horovod.spark.run(fn, (params,), num_proc)`` under the watchdog; a TrainingError on any loss.

    Must be called from the main thread (Horovod installs signal handlers). The watchdog runs in a
    daemon thread; when it fires it cancels the Spark job, stops the rank processes on this host by
    PID and, if Horovod is still waiting, interrupts it (SIGINT to this process, which Horovod's
    launcher handles by terminating its ranks). Ends within about ``rank_timeout`` + a few seconds.
    ``transport`` is ``gloo`` or ``mpi`` (:mod:`.transport`); ``env`` already holds what it needs.
    """
    import horovod.spark

    # Gloo's own timeout is the backstop, a little after the watchdog's, so a stuck rank is named by
    # the watchdog rather than reported as a timeout of the rank that waited for it.
    env = {**env, "HOROVOD_GLOO_TIMEOUT_SECONDS": str(int(rank_timeout + 30))}
    fired: dict[str, str] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll):
            beats = read_beats(heartbeat_dir)
            msg = stalled_rank(beats, rank_timeout)
            if not msg:
                continue
            fired["message"] = msg
            log.error("%s; stopping the job", msg)
            spark.sparkContext.cancelAllJobs()
            killed = _stop_local_ranks(beats)
            log.info("stopped rank processes %s", killed)
            if not done.wait(15):
                os.kill(os.getpid(), signal.SIGINT)
            return

    launcher_err = _Tail(sys.stderr)  # mpirun names a failed rank only in what it prints
    watcher = threading.Thread(target=watch, name="rank-watchdog", daemon=True)
    watcher.start()
    try:
        return horovod.spark.run(fn, args=(params,), num_proc=num_proc, env=env, start_timeout=start_timeout,
                                 verbose=0, use_mpi=transport == "mpi", use_gloo=transport == "gloo",
                                 stderr=launcher_err)
    except BaseException as e:  # noqa: BLE001 - every failure becomes one TrainingError naming the rank
        if "message" in fired:
            raise TrainingError(fired["message"]) from e
        if isinstance(e, KeyboardInterrupt):
            raise
        raise TrainingError(explain_failure(e, read_beats(heartbeat_dir), launcher_err.kept)) from e
    finally:
        done.set()
