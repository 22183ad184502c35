"""The baselines the benchmark compares the product with, each run in a fresh process.

Every baseline runs as ``python -m sparkdl_pipe.bench.baselines '<json>'`` so that its thread count
is set before TensorFlow starts and nothing it loads stays in the driver. It prints one JSON line.

Runs on: the driver machine, as child processes of :mod:`sparkdl_pipe.bench.run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing import get_context

import numpy as np

from sparkdl_pipe.errors import SparkdlPipeError


def run_baseline(kind: str, *, env: dict | None = None, **params) -> dict:
    """Run one baseline in a child process and return its JSON result (driver).

    ``env``: the child's environment (default: the driver's). The lines that measure the product's own
    input pipeline pass the environment its workers get (:func:`sparkdl_pipe._env.worker_env`).
    """
    return run_baselines_together(1, kind, env=env, **params)[0]


def run_baselines_together(n: int, kind: str, *, env: dict | None = None, **params) -> list[dict]:
    """Run ``n`` copies of one baseline at the same time, each in its own process (driver).

    ``n`` independent one-thread trainings are what ``n`` ranks could do if exchanging gradients
    cost nothing: the cores' own ceiling for data parallelism.
    """
    args = json.dumps({"kind": kind, **params})
    procs = [subprocess.Popen([sys.executable, "-m", "sparkdl_pipe.bench.baselines", args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=3600)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                tail = "\n".join(err.strip().splitlines()[-15:])
                raise SparkdlPipeError(f"benchmark baseline {kind!r} failed (exit {proc.returncode}):\n{tail}")
            results.append(json.loads(lines[-1]))
    finally:
        for proc in procs:  # a failed or timed-out copy leaves none of its siblings running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _set_threads(threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _decode_files(args: tuple[list[str], dict]) -> int:
    from sparkdl_pipe.preprocess.image import decode_image
    from sparkdl_pipe.preprocess.spec import ImageSpec

    paths, spec_dict = args
    spec = ImageSpec.from_dict(spec_dict)
    ok = 0
    for p in paths:
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError:  # a broken symlink in the scale inputs: not decoded, as ingest rejects it
            continue
        ok += decode_image(data, spec).ok
    return ok


def decode_only(root: str, spec: dict, processes: int) -> dict:
    """Read + decode + resize every file under ``root`` with one process per core: ingest's ceiling."""
    from sparkdl_pipe.bench.data import list_files

    paths = list_files(root)
    chunks = [(paths[i::processes * 8], spec) for i in range(processes * 8)]
    with get_context("spawn").Pool(processes) as pool:
        pool.map(_decode_files, chunks[:processes])  # warm the workers (imports) before timing
        t0 = time.perf_counter()
        ok = sum(pool.map(_decode_files, chunks))
        secs = time.perf_counter() - t0
    return {"rows": len(paths), "decoded": ok, "seconds": secs, "per_s": len(paths) / secs}


class _EpochTimer:
    def __init__(self) -> None:
        self.times: list[float] = []

    def callback(self):
        import tf_keras as keras

        timer = self

        class T(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                timer.times.append(time.perf_counter() - self.t0)

        return T()


def _compiled_model(model: str, shape, num_classes: int, seed: int):
    import tf_keras as keras

    from sparkdl_pipe.models.registry import get_builder

    keras.utils.set_random_seed(seed)
    m = get_builder(model)(tuple(shape), num_classes)
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def _steady(times: list[float]) -> float:
    """Seconds per epoch ignoring the first (graph tracing, warm-up): the median of the rest."""
    rest = times[1:] if len(times) > 1 else times
    return float(np.median(rest))


def train_in_memory(data: str, model: str, threads: int, batch_size: int, steps: int, epochs: int,
                    seed: int = 0) -> dict:
    """Train from numpy arrays already in memory: the input pipeline's ceiling."""
    _set_threads(threads)
    import tensorflow as tf

    with np.load(data) as z:
        x, y = z["x"], z["y"]
    m = _compiled_model(model, x.shape[1:], int(y.max()) + 1, seed)
    ds = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed).repeat()
          .batch(batch_size, drop_remainder=True).prefetch(4))
    timer = _EpochTimer()
    m.fit(ds, epochs=epochs, steps_per_epoch=steps, callbacks=[timer.callback()], verbose=0)
    secs = _steady(timer.times)
    return {"threads": threads, "epoch_seconds": timer.times, "per_s": steps * batch_size / secs}


def train_petastorm(url: str, shape: list[int], model: str, num_classes: int, threads: int,
                    batch_size: int, steps: int, epochs: int, buffer: int, cached: bool, seed: int = 0) -> dict:
    """The same model and loop, fed by the product's Petastorm input (streamed, or shard cached)."""
    _set_threads(threads)
    from sparkdl_pipe.executor.data import make_cached_train_dataset, make_train_dataset

    m = _compiled_model(model, shape, num_classes, seed)
    if cached:
        ds, _ = make_cached_train_dataset(url, tuple(shape), batch_size, shard=0, shard_count=1, seed=seed)
    else:
        ds = make_train_dataset(url, tuple(shape), batch_size, shard=0, shard_count=1, seed=seed, buffer=buffer)
    timer = _EpochTimer()
    m.fit(ds, epochs=epochs, steps_per_epoch=steps, callbacks=[timer.callback()], verbose=0)
    secs = _steady(timer.times)
    return {"threads": threads, "epoch_seconds": timer.times, "per_s": steps * batch_size / secs}


def read_petastorm(url: str, shape: list[int], batch_size: int, steps: int, buffer: int,
                   shard: int = 0, shard_count: int = 1, seed: int = 0) -> dict:
    """Petastorm -> tf.data with no model: how fast one rank's input pipeline can go."""
    _set_threads(1)
    from sparkdl_pipe.executor.data import make_train_dataset

    ds = make_train_dataset(url, tuple(shape), batch_size, shard=shard, shard_count=shard_count, seed=seed,
                            buffer=buffer)
    it = iter(ds)
    for _ in range(min(steps, 20)):  # warm-up: reader threads, first row groups, tracing
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    secs = time.perf_counter() - t0
    return {"per_s": steps * batch_size / secs, "seconds": secs}


def predict_in_memory(model_path: str, data: str, threads: int, batch_size: int, repeats: int = 3) -> dict:
    """Keras' own ``model.predict`` on an in-memory array (best of ``repeats``): scoring's ceiling."""
    _set_threads(threads)
    import tf_keras as keras

    m = keras.models.load_model(model_path, compile=False, safe_mode=True)
    with np.load(data) as z:
        x = z["x"]
    m.predict(x[: batch_size * 2], batch_size=batch_size, verbose=0)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        m.predict(x, batch_size=batch_size, verbose=0)
        best = min(best, time.perf_counter() - t0)
    return {"threads": threads, "rows": len(x), "per_s": len(x) / best}


BASELINES: dict[str, Callable[..., dict]] = {
    "decode_only": decode_only,
    "train_in_memory": train_in_memory,
    "train_petastorm": train_petastorm,
    "read_petastorm": read_petastorm,
    "predict_in_memory": predict_in_memory,
}


def main(argv: list[str] | None = None) -> int:
    args = json.loads((argv or sys.argv[1:])[0])
    kind = args.pop("kind")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = BASELINES[kind](**args)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
