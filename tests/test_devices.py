"""executor/devices.py: where a task's GPU assignment is found and how the process is pinned to it.

The full path (fake GPUs advertised by standalone workers, Spark assigning them to executors, ranks
and scoring tasks pinning them) runs in tests/test_cluster.py; these check the pieces quickly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sparkdl_pipe.executor.devices import CUDA_ENV, DeviceAssignment, task_gpu_addresses


def run_py(code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != CUDA_ENV}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_without_an_assignment_nothing_is_changed():
    out = run_py("import json, os\n"
                 "from sparkdl_pipe.executor.devices import pin_task_gpu\n"
                 "d = pin_task_gpu()\n"
                 "print(json.dumps({**d.to_dict(), 'env': os.environ.get('CUDA_VISIBLE_DEVICES')}))")
    assert out == {"task_gpus": [], "source": "none", "cuda_visible_devices": None, "tf_gpus": None, "env": None}


def test_a_horovod_rank_pins_the_gpu_its_task_was_given_before_tensorflow():
    """In a rank process, Horovod's task_exec stores the Spark task's resources; we read them there."""
    out = run_py(
        "import json, os, sys\n"
        "from pyspark.resource import ResourceInformation\n"
        "from horovod.spark.task import task_info\n"
        "task_info.set_resources({'gpu': ResourceInformation('gpu', ['5', '7'])})\n"
        "from sparkdl_pipe.executor.devices import pin_task_gpu\n"
        "assert 'tensorflow' not in sys.modules\n"
        "d = pin_task_gpu().with_tf_gpus()\n"
        "print(json.dumps({**d.to_dict(), 'env': os.environ['CUDA_VISIBLE_DEVICES']}))")
    assert out == {"task_gpus": ["5", "7"], "source": "horovod-task", "cuda_visible_devices": "5",
                   "tf_gpus": 0, "env": "5"}  # one GPU per rank; no GPU on this machine: TF on CPU


def test_a_scoring_task_reads_its_task_context(spark):
    def probe(batches):
        import pandas as pd

        for _ in batches:
            addrs, source = task_gpu_addresses()
            yield pd.DataFrame({"source": [source], "n": [len(addrs)]})

    rows = spark.range(4, numPartitions=2).mapInPandas(probe, "source string, n long").collect()
    assert {(r["source"], r["n"]) for r in rows} == {("spark-task", 0)}  # local mode: no GPUs assigned


def test_assignment_record_round_trips():
    d = DeviceAssignment(("3",), "spark-task", "3", 0)
    assert json.loads(d.to_json()) == {"task_gpus": ["3"], "source": "spark-task",
                                       "cuda_visible_devices": "3", "tf_gpus": 0}
