"""Reading a Petastorm split into fixed-size numpy batches and ``tf.data``, one shard per rank.

``kind`` names the split's kind of data (``image``, ``text``) or is its Modality object (ranks
pass the object: a kind registered on the driver only is unknown in a rank's process).

Runs on: executors (Horovod ranks) and the driver (tests, evaluation tools).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from sparkdl_pipe.schema import decode_features, feature_column, native_dtype


@contextlib.contextmanager
def open_reader(url: str, *, shard: int | None = None, shard_count: int | None = None,
                num_epochs: int | None = 1, seed: int = 0, shuffle: bool = False, workers: int = 2,
                pool: str = "thread", kind: Any = "image", label_col: str = "label"):
    """A Petastorm batch reader over the feature (``image`` or ``tokens``) and ``label`` columns of one split.

    Single passes (``num_epochs=1``) must use ``pool="dummy"``: with Petastorm 0.13.1's thread pool
    a one-epoch read sometimes ends before yielding anything (about 1 read in 6 on these machines,
    see benchmarks/NOTES.md). Looping readers (``num_epochs=None``) never end, so they can use threads.
    """
    from petastorm import make_batch_reader

    from sparkdl_pipe.manifest import refuse_pickled_schema

    refuse_pickled_schema(url)  # checked again here: the directory may have changed since the driver looked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = make_batch_reader(url, schema_fields=[feature_column(kind), label_col], cur_shard=shard,
                                   shard_count=shard_count, num_epochs=num_epochs,
                                   shuffle_row_groups=shuffle, seed=seed, reader_pool_type=pool,
                                   workers_count=workers)
    try:
        yield reader
    finally:
        reader.stop()
        reader.join()


def iter_arrays(reader, shape: tuple[int, ...], kind: Any = "image", label_col: str = "label",
                label_dtype: str = "int32") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(features (N, *shape): uint8 pixels or int32 token ids, labels (N,): int32 class indices, or the
    task's stored column, e.g. float32 ``target``) per row group read."""
    col = feature_column(kind)
    for batch in reader:
        yield decode_features(getattr(batch, col), shape, kind), np.asarray(getattr(batch, label_col),
                                                                            dtype=label_dtype)


def shuffled_batches(chunks: Iterator[tuple[np.ndarray, np.ndarray]], batch_size: int, buffer: int,
                     rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Re-chunk row groups into exact ``batch_size`` batches through a shuffle buffer of whole rows."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    held = 0
    for x, y in chunks:
        xs.append(x)
        ys.append(y)
        held += len(y)
        if held < max(buffer, batch_size):
            continue
        X, Y = np.concatenate(xs), np.concatenate(ys)
        perm = rng.permutation(len(Y))
        X, Y = X[perm], Y[perm]
        n_full = (len(Y) - buffer // 2) // batch_size if len(Y) - buffer // 2 >= batch_size else 0
        for i in range(n_full):
            yield X[i * batch_size:(i + 1) * batch_size], Y[i * batch_size:(i + 1) * batch_size]
        rest = n_full * batch_size
        xs, ys, held = [X[rest:]], [Y[rest:]], len(Y) - rest
    if held:
        X, Y = np.concatenate(xs), np.concatenate(ys)
        perm = rng.permutation(len(Y))
        X, Y = X[perm], Y[perm]
        for i in range(0, len(Y) - batch_size + 1, batch_size):
            yield X[i:i + batch_size], Y[i:i + batch_size]


def make_train_dataset(url: str, shape: tuple[int, ...], batch_size: int, *, shard: int, shard_count: int,
                       seed: int, buffer: int = 4096, kind: Any = "image", label_col: str = "label",
                       label_dtype: str = "int32"):
    """An endless ``tf.data.Dataset`` of (images, labels) batches from this rank's shard.

    The reader loops (``num_epochs=None``), so a rank never runs out of data: the caller fixes the
    number of steps per epoch, the same on every rank, which is what keeps allreduce from hanging.
    """
    import tensorflow as tf

    def gen():
        rng = np.random.default_rng([seed, shard])
        # The seed must be the same on every rank: Petastorm uses it to deal row groups to shards.
        with open_reader(url, shard=shard, shard_count=shard_count, num_epochs=None, seed=seed,
                         shuffle=True, kind=kind, label_col=label_col) as reader:
            yield from shuffled_batches(iter_arrays(reader, shape, kind, label_col, label_dtype), batch_size, buffer,
                                        rng)

    dtype = tf.as_dtype(native_dtype(kind))
    sig = (tf.TensorSpec((batch_size, *shape), dtype), tf.TensorSpec((batch_size,), tf.as_dtype(label_dtype)))
    return tf.data.Dataset.from_generator(gen, output_signature=sig).prefetch(4)


def make_cached_train_dataset(url: str, shape: tuple[int, ...], batch_size: int, *, shard: int,
                              shard_count: int, seed: int, kind: Any = "image", label_col: str = "label",
                              label_dtype: str = "int32"):
    """This rank's whole shard read once into memory, then shuffled every epoch by ``tf.data``.

    For shards that fit the memory budget (the driver decides, see ``TrainConfig.cache_mb``): after
    the first read no Parquet is parsed and no Python generator runs, so the input pipeline costs
    the training step next to nothing (the same idea as Horovod's ``inmemory_cache_all``). Like
    :func:`make_train_dataset` it repeats forever; the caller fixes the steps per epoch.
    """
    import tensorflow as tf

    xs, ys = [], []
    for x, y in read_split(url, shape, shard=shard, shard_count=shard_count, kind=kind, label_col=label_col,
                           label_dtype=label_dtype):
        xs.append(x)
        ys.append(y)
    if not ys:
        raise ValueError(f"shard {shard} of {shard_count} of {url} is empty")
    X, Y = tf.constant(np.concatenate(xs)), tf.constant(np.concatenate(ys))
    n = int(Y.shape[0])
    # Shuffle row indices, not rows: one copy of the data, gathered a batch at a time.
    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed + shard, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=True).map(lambda i: (tf.gather(X, i), tf.gather(Y, i)))
    return ds.prefetch(4), n


def read_split(url: str, shape: tuple[int, ...], *, shard: int | None = None,
               shard_count: int | None = None, kind: Any = "image", label_col: str = "label",
               label_dtype: str = "int32") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every row of a split (or of one shard of it), once, as (features, labels) chunks."""
    with open_reader(url, shard=shard, shard_count=shard_count, num_epochs=1, pool="dummy", kind=kind,
                     label_col=label_col) as reader:
        yield from iter_arrays(reader, shape, kind, label_col, label_dtype)
