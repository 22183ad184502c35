"""The one place where environment variables that dependencies require are set.

Runs on the driver (when ``sparkdl_pipe`` is imported) and in executors and Horovod ranks (every
executor-side entry point imports this package first, and Spark is told to export the same
variables to executors via :data:`EXECUTOR_ENV`).
"""

from __future__ import annotations

import os
import warnings

#: Variables every process that may import TensorFlow needs. Horovod's Keras integration only
#: works with the Keras 2 API (tf-keras); TensorFlow picks it when this is set before import.
EXECUTOR_ENV: dict[str, str] = {
    "TF_USE_LEGACY_KERAS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYARROW_IGNORE_TIMEZONE": "1",
}


#: glibc malloc settings for the processes that run TensorFlow steps (Horovod ranks, Spark's Python
#: workers), given to them when they start (the driver itself is left as the user started it). With
#: glibc's defaults, a ``tf.data`` pipeline holding a Python generator (the streamed Petastorm input)
#: made TensorFlow's compute thread map, fault in and unmap its 0.8-1.6 MB tensors on every step:
#: 40% of that thread's time in the kernel and half the training rate on the AMD machine
#: (benchmarks/NOTES.md, change 22). No ``mmap`` for large blocks, and free memory kept up to
#: 128 MiB per arena, keep those blocks in the process. A ``GLIBC_TUNABLES`` of the user's wins.
WORKER_MALLOC_TUNABLES = ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=134217728:"
                          "glibc.malloc.top_pad=16777216")


#: Read by the product's Horovod build (scripts/horovod-wake.patch; its name is compiled into the
#: library): "1" makes the background loop cycle on each enqueue. Set for MPI jobs by
#: sparkdl_pipe.driver.transport.launcher_env, reported by each rank into the model card.
HOROVOD_WAKE_ENV = "SPARKDL_HOROVOD_WAKE"


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` plus :data:`WORKER_MALLOC_TUNABLES` as ``GLIBC_TUNABLES``, unless ``env`` sets that."""
    return {"GLIBC_TUNABLES": WORKER_MALLOC_TUNABLES, **env}


def configure_process_env() -> None:
    """Set the required variables in this process (before TensorFlow is imported). Idempotent."""
    for key, value in EXECUTOR_ENV.items():
        os.environ.setdefault(key, value)
    # TF_USE_LEGACY_KERAS must be exactly "1": a user value of "0" would break Horovod.
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    # pyarrow 14's legacy dataset API, which Petastorm uses, warns on every read.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyarrow(\.|$)")
    warnings.filterwarnings("ignore", message=r".*pyarrow\.filesystem.*")
