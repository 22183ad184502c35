"""Training that fails fast when a rank dies or hangs, and resumes: real Horovod ranks, killed by PID."""

import json
import os
import signal
import threading
import time

import psutil
import pytest

from sparkdl_pipe import storage
from sparkdl_pipe.config import TrainConfig
from sparkdl_pipe.driver.resume import work_dir
from sparkdl_pipe.driver.train import run_training
from sparkdl_pipe.errors import TrainingError, UserInputError
from tests.conftest import TRAINED_DIGITS

EPOCHS = TRAINED_DIGITS["epochs"]


def _work(out: str) -> str:
    """The local path of the run's work directory (a file:// URL)."""
    return storage.local_path(work_dir("file://" + out))


def _cfg(ds, out, **kw):
    return TrainConfig(ds, out, **{**TRAINED_DIGITS, **kw})


def _rank_process(out: str, rank: int, until) -> psutil.Process:
    """The live process of ``rank``: its PID from its heartbeat, checked to be one of our descendants."""
    beat = os.path.join(_work(out), "heartbeats", f"rank-{rank}.json")
    ours = {p.pid for p in psutil.Process().children(recursive=True)}
    while time.time() < until:
        try:
            pid = json.load(open(beat))["pid"]
            if pid in ours or pid in {p.pid for p in psutil.Process().children(recursive=True)}:
                return psutil.Process(pid)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"rank {rank} never showed up")


def _in_thread(fn):
    """Run ``fn`` beside the training (which must stay in the main thread: Horovod installs signal handlers)."""
    box: dict = {}

    def go():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return box


def test_killed_rank_ends_job_fast_and_resume_matches_uninterrupted(spark, digits_ds, trained, tmp_path):
    digits = digits_ds[0]
    out = str(tmp_path / "m")
    ck = os.path.join(_work(out), "checkpoints", "last.json")

    def kill_rank_1_after_epoch_2():
        deadline = time.time() + 300
        proc = _rank_process(out, 1, deadline)
        while time.time() < deadline and not (os.path.exists(ck) and json.load(open(ck))["epoch"] >= 2):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # a rank lost mid-epoch (kill -9, like the OOM killer)
        return time.time()

    box = _in_thread(kill_rank_1_after_epoch_2)
    with pytest.raises(TrainingError) as err:
        run_training(spark, _cfg(digits, out, rank_timeout=60))
    took = time.time() - box["result"]
    msg = str(err.value)
    print(f"\nrank kill -> job end: {took:.1f}s; {msg}")
    assert "rank 1" in msg and "SIGKILL" in msg and "--resume" in msg
    assert took < 60
    assert not os.path.exists(out)  # nothing half-written published
    done = json.load(open(ck))["epoch"]
    assert 2 <= done < EPOCHS

    resumed = run_training(spark, _cfg(digits, out, resume=True))
    card = json.load(open(os.path.join(out, "model_card.json")))
    assert card["training"]["resumed_from_epoch"] == done
    assert [h["epoch"] for h in card["history"]] == list(range(1, EPOCHS + 1))
    assert "epoch-001.weights.h5" in os.listdir(os.path.join(out, "checkpoints"))
    assert not os.path.exists(_work(out))

    full = trained[1]  # the same configuration, trained without interruption
    print(f"resumed test accuracy {resumed.test_accuracy:.4f} vs uninterrupted {full.test_accuracy:.4f}")
    assert resumed.test_accuracy >= 0.9 and full.test_accuracy >= 0.9
    assert abs(resumed.test_accuracy - full.test_accuracy) <= 0.04
    # resuming a finished model for more epochs needs --overwrite; asking for no more epochs is refused
    with pytest.raises(UserInputError, match=f"more than the {EPOCHS} epochs"):
        run_training(spark, _cfg(digits, out, resume=True, overwrite=True))


def test_stuck_rank_is_named_by_the_watchdog(spark, digits_ds, tmp_path):
    digits = digits_ds[0]
    out = str(tmp_path / "m")
    beat = os.path.join(_work(out), "heartbeats", "rank-1.json")

    def freeze_rank_1():
        proc = _rank_process(out, 1, time.time() + 300)
        while json.load(open(beat))["steps"] < 5:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGSTOP)  # alive but frozen: Horovod alone would wait for it
        return time.time(), proc

    box = _in_thread(freeze_rank_1)
    cfg = TrainConfig(digits, out, model="mlp", epochs=500, batch_size=16, num_proc=2, rank_timeout=10)
    with pytest.raises(TrainingError) as err:
        run_training(spark, cfg)
    assert "result" in box, f"the job ended before the rank was frozen: {err.value}"
    stopped_at, proc = box["result"]
    msg = str(err.value)
    print(f"\nrank frozen -> job end: {time.time() - stopped_at:.1f}s; {msg}")
    assert "rank 1" in msg and "no heartbeat" in msg and "--rank-timeout 10" in msg
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


def test_watchdog_rules_and_exit_causes():
    from sparkdl_pipe.driver.watchdog import RankBeat, describe_exit, explain_failure, stalled_rank

    now = 1000.0
    fresh = RankBeat(0, 11, "h", 0, now - 1, 2, 50, now - 1)
    assert stalled_rank({0: fresh}, 30, now) is None
    silent = RankBeat(1, 12, "h", 0, now - 40, 2, 50, now - 40)
    assert "rank 1 (pid 12 on h) sent no heartbeat for 40s" in stalled_rank({0: fresh, 1: silent}, 30, now)
    stuck = RankBeat(1, 12, "h", 0, now - 1, 3, 60, now - 45)
    assert "finished no batch for 45s" in stalled_rank({1: stuck}, 30, now)
    waiting = RankBeat(0, 10, "h", 0, now - 1, 3, 60, now - 35)  # waits in allreduce for the silent rank 1
    assert stalled_rank({0: waiting, 1: silent}, 30, now).startswith("rank 1 (pid 12 on h) sent no heartbeat")
    starting = RankBeat(1, 12, "h", 0, now - 1, 0, 0, now - 45)  # still starting up: alive is enough
    finished = RankBeat(1, 12, "h", 0, now - 99, 5, 99, now - 99, done=True)
    assert stalled_rank({1: starting}, 30, now) is None and stalled_rank({1: finished}, 30, now) is None
    assert "SIGKILL" in describe_exit(137) and "SIGKILL" in describe_exit(-9) and "SIGSEGV" in describe_exit(139)
    err = RuntimeError("Horovod detected ... The first process to do so was:\nProcess name: 1\nExit code: 137\n")
    assert explain_failure(err, {1: stuck}).startswith("rank 1 (pid 12 on h) ended with exit status 137 (SIGKILL")
    # mpirun names the rank in what it prints, not in the exception Horovod raises
    mpi = RuntimeError("mpirun failed with exit code 137")
    printed = "mpirun noticed that process rank 1 with PID 29113 on node vm-5137 exited on signal 9 (Killed)."
    assert explain_failure(mpi, {1: stuck}, printed).startswith("rank 1 (pid 12 on h) ended with exit status -9 (SIGKILL")
    printed = "The first process to do so was:\n\n  Process name: [[12509,1],0]\n  Exit code:    1\n"
    assert explain_failure(mpi, {}, printed).startswith("rank 0 ended with exit status 1 (an error in the training")
