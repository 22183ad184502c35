"""GPU scheduling: the GPU Spark assigned to this task, and TensorFlow made to see only that GPU.

With ``spark.task.resource.gpu.amount`` set, Spark gives every task GPU addresses
(``TaskContext.resources()['gpu'].addresses``). A task must use *those*, not GPU 0, or two tasks
on one host share a GPU while another idles. :func:`pin_task_gpu` reads the assignment and sets
``CUDA_VISIBLE_DEVICES`` to it before TensorFlow is imported, so TensorFlow sees only that GPU
(as its ``/GPU:0``).

Where the assignment comes from:

- a scoring task (``mapInPandas``) runs in Spark's Python worker: ``pyspark.TaskContext.get()``;
- a Horovod rank does *not*: ``horovod.spark.run`` starts each rank as a separate process from the
  Spark task (through its task service), where ``TaskContext.get()`` is ``None``. Before calling the
  rank function, Horovod's ``task_exec`` asks the task service of the rank's own Spark task for that
  task's resources and stores them; ``horovod.spark.task.get_available_devices()`` returns them.

Runs on: executors (Horovod ranks, scoring Python workers). TensorFlow, Spark and Horovod are
imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

CUDA_ENV = "CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class DeviceAssignment:
    """What this process was given and what it did with it (recorded in model cards and score summaries).

    ``task_gpus``: addresses Spark assigned to the task (empty without GPU scheduling).
    ``source``: ``spark-task`` (TaskContext), ``horovod-task`` (Horovod's task service) or ``none``.
    ``cuda_visible_devices``: the value this process runs with (None: unset, not touched).
    ``tf_gpus``: GPUs TensorFlow lists after pinning (None until TensorFlow was asked).
    """

    task_gpus: tuple[str, ...]
    source: str
    cuda_visible_devices: str | None
    tf_gpus: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["task_gpus"] = list(self.task_gpus)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_tf_gpus(self) -> DeviceAssignment:
        """The same record with the number of GPUs TensorFlow sees (imports TensorFlow)."""
        import tensorflow as tf

        return DeviceAssignment(self.task_gpus, self.source, self.cuda_visible_devices,
                                len(tf.config.list_physical_devices("GPU")))


def task_gpu_addresses() -> tuple[tuple[str, ...], str]:
    """(GPU addresses Spark assigned to the current task, where they were found)."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
    except ImportError:
        ctx = None
    if ctx is not None:
        res = ctx.resources()
        return (tuple(str(a) for a in res["gpu"].addresses) if "gpu" in res else ()), "spark-task"
    if "horovod.spark.task" in sys.modules:  # a rank process started by horovod.spark.run
        from horovod.spark.task import get_available_devices

        addrs = tuple(str(a) for a in get_available_devices())
        return addrs, "horovod-task" if addrs else "none"
    return (), "none"


def pin_task_gpu(max_gpus: int | None = 1) -> DeviceAssignment:
    """Make this process use only the GPU(s) assigned to its Spark task (the first ``max_gpus``).

    Call before TensorFlow is imported: it sets ``CUDA_VISIBLE_DEVICES``. If TensorFlow is already
    imported, the devices are restricted with ``tf.config.set_visible_devices`` instead (possible
    until TensorFlow initialises its GPUs). Without an assignment nothing is changed.
    """
    addrs, source = task_gpu_addresses()
    if not addrs:
        return DeviceAssignment((), source, os.environ.get(CUDA_ENV))
    chosen = addrs[:max_gpus] if max_gpus else addrs
    if "tensorflow" in sys.modules and os.environ.get(CUDA_ENV) is None:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        try:
            tf.config.set_visible_devices([gpus[int(a)] for a in chosen if int(a) < len(gpus)], "GPU")
        except RuntimeError as e:  # GPUs already initialised in this process
            log.warning("could not restrict TensorFlow to GPU %s: %s", ",".join(chosen), e)
        return DeviceAssignment(addrs, source, None)
    os.environ[CUDA_ENV] = ",".join(chosen)
    return DeviceAssignment(addrs, source, os.environ[CUDA_ENV])
