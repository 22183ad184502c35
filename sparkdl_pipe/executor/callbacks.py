"""Rank-0 Keras callbacks that make training visible: progress lines and TensorBoard scalars.

Runs on: executors (inside the Horovod rank started by :func:`sparkdl_pipe.executor.train_worker.train_rank`)
and the driver (:func:`parse_progress_line`). The Keras callbacks themselves are in
:mod:`sparkdl_pipe.executor.keras_callbacks`; TensorFlow is imported inside :func:`write_scalars`.

Progress channel: rank 0 sends one JSON line per epoch over TCP to a small server the driver
runs for the length of the training (:class:`sparkdl_pipe.driver.progress.ProgressServer`, at
``spark.driver.host``, which executors reach anyway). Horovod's own ``horovod.spark.run(stdout=...)``
relay was tried first: it reads rank output in 64 KiB blocks, so lines reached the driver only when
training ended; and without it rank output ends in the executor's stdout log, which on a cluster the
driver never sees. If the driver cannot be reached, rank 0 prints the lines to its stdout instead.

TensorBoard: the ``tensorboard`` package is not a dependency and ``tf.summary.scalar`` needs it,
so scalars are written with TensorFlow's core ``tf.summary.write`` op and the scalar plugin's
metadata: the event files are the ones TensorBoard's scalar dashboard reads.
"""

from __future__ import annotations

import json

PROGRESS_MARK = "SPARKDL_PROGRESS "

#: Per-epoch record keys written to TensorBoard (as ``train/loss``, ``val/accuracy``, ...).
_TB_TAGS = {"loss": "train/loss", "accuracy": "train/accuracy", "val_loss": "val/loss",
            "val_accuracy": "val/accuracy", "samples_per_s": "perf/samples_per_s",
            "learning_rate": "train/learning_rate", "val_mae": "val/mae", "val_rmse": "val/rmse",
            "val_r2": "val/r2"}


def progress_line(record: dict) -> str:
    """The one-line wire form of a progress record (what rank 0 prints)."""
    return PROGRESS_MARK + json.dumps(record, sort_keys=True)


def parse_progress_line(line: str) -> dict | None:
    """The record in a relayed line (Horovod may prefix it with ``[rank]<stdout>:``), or None."""
    i = line.find(PROGRESS_MARK)
    if i < 0:
        return None
    try:
        rec = json.loads(line[i + len(PROGRESS_MARK):])
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


class ProgressSink:
    """Rank 0's end of the progress channel: JSON lines to the driver's socket, else stdout."""

    def __init__(self, address: tuple[str, int] | None, timeout: float = 10.0) -> None:
        self._sock = None
        if address:
            import socket

            try:
                self._sock = socket.create_connection((address[0], int(address[1])), timeout=timeout)
            except OSError as e:
                print(f"[rank 0] progress: driver at {address[0]}:{address[1]} unreachable ({e}); "
                      "printing progress here", flush=True)

    def send(self, record: dict) -> None:
        line = progress_line(record) + "\n"
        if self._sock is not None:
            try:
                self._sock.sendall(line.encode())
                return
            except OSError:
                self._sock = None
        print(line, end="", flush=True)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def write_scalars(writer, record: dict, step: int) -> None:
    """Write a record's numeric metrics as TensorBoard scalars at ``step`` (no tensorboard package needed)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    with writer.as_default():
        for key, tag in _TB_TAGS.items():
            if record.get(key) is not None:
                tf.summary.write(tag, tf.constant(float(record[key]), dtype=tf.float32), step=step,
                                 metadata=meta)
    writer.flush()
