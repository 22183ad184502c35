"""Horovod transports: MPI (Open MPI from the venv, shared memory on one host) and Gloo (TCP) both train
the same model in sync; ``auto`` picks MPI here and Gloo when a GPU is asked for; bad requests are one line."""

import json
import os

import pytest

from sparkdl_pipe.config import TrainConfig
from sparkdl_pipe.driver.train import run_training
from sparkdl_pipe.driver.transport import (
    MPI_CYCLE_TIME_MS,
    WAKE_CYCLE_TIME_MS,
    horovod_wakes_on_enqueue,
    launcher_env,
    mpi_bin_dir,
    resolve_transport,
)
from sparkdl_pipe.errors import UserInputError
from tests.conftest import TRAINED_DIGITS


def test_open_mpi_is_installed_in_the_venv():
    d = mpi_bin_dir()
    assert d is not None and os.path.isfile(os.path.join(d, "mpirun")) and os.path.isfile(os.path.join(d, "orted"))


def test_auto_picks_mpi_on_cpu_and_gloo_for_gpus():
    assert resolve_transport("auto") == "mpi"
    assert resolve_transport("auto", gpus_per_task=1.0) == "gloo"
    assert resolve_transport("gloo") == "gloo" and resolve_transport("mpi") == "mpi"
    env = launcher_env("mpi", {"PATH": "/usr/bin"})
    assert env["PATH"].split(os.pathsep)[0] == mpi_bin_dir() and env["OMPI_MCA_mpi_yield_when_idle"] == "1"
    assert os.path.isfile(env["OMPI_MCA_orte_launch_agent"])
    # make install builds Horovod with scripts/horovod-wake.patch: its loop wakes on each enqueue
    assert horovod_wakes_on_enqueue()
    assert env["SPARKDL_HOROVOD_WAKE"] == "1" and env["HOROVOD_CYCLE_TIME"] == WAKE_CYCLE_TIME_MS
    assert launcher_env("mpi", {"PATH": "/usr/bin", "HOROVOD_CYCLE_TIME": "1"})["HOROVOD_CYCLE_TIME"] == "1"
    off = launcher_env("mpi", {"PATH": "/usr/bin", "SPARKDL_HOROVOD_WAKE": "0"})
    assert off["SPARKDL_HOROVOD_WAKE"] == "0" and off["HOROVOD_CYCLE_TIME"] == MPI_CYCLE_TIME_MS
    assert launcher_env("gloo", {"PATH": "/usr/bin"}) == {"PATH": "/usr/bin"}


def test_bad_transport_is_a_user_error():
    with pytest.raises(UserInputError, match="--transport"):
        TrainConfig("d", "o", transport="nccl")
    with pytest.raises(UserInputError, match="--transport"):
        resolve_transport("tcp")


def test_gloo_trains_like_mpi(spark, digits_ds, trained, tmp_path):
    """The session's trained model went over MPI (auto); the same run over Gloo learns as well and
    its two ranks end with identical weights too."""
    _, mpi_res = trained
    assert mpi_res.transport == "mpi"
    out = str(tmp_path / "m-gloo")
    res = run_training(spark, TrainConfig(digits_ds[0], out, **{**TRAINED_DIGITS, "transport": "gloo"}))
    assert res.transport == "gloo"
    assert len(res.weights_digests) == 2 and len(set(res.weights_digests)) == 1
    assert res.test_accuracy is not None and res.test_accuracy >= 0.9
    assert abs(res.test_accuracy - mpi_res.test_accuracy) < 0.05
    with open(os.path.join(out, "model_card.json")) as f:
        card = json.load(f)
    assert card["training"]["transport"] == "gloo" and card["training"]["transport_requested"] == "gloo"
    assert card["training"]["horovod_loop"] == {"wake_on_enqueue": False, "cycle_time_ms": None}
    # the session's MPI model: its ranks cycled when a gradient was enqueued, with a 1 s heartbeat
    with open(os.path.join(trained[0], "model_card.json")) as f:
        mpi_card = json.load(f)
    assert mpi_card["training"]["horovod_loop"] == {"wake_on_enqueue": True, "cycle_time_ms": 1000.0}
