"""Parquet part files written by the tasks themselves, and the driver's side of that protocol.

Ingest and scoring tasks write their output rows straight to storage with pyarrow instead of
sending them back to the JVM for Spark's writer: on a few cores, the round trip (Arrow to the JVM,
a cache, Spark's Parquet encoder, a counting job) cost as much CPU as the work itself
(benchmarks/NOTES.md). Each task attempt writes ``<staging>/<dir>/part-<task>-<attempt>.parquet``
and reports the files it wrote in its summary rows; the driver keeps exactly the files its
successful tasks reported (:func:`keep_reported`), so a failed or duplicate attempt leaves nothing.

Runs on: executors (:class:`PartWriter`) and the driver (:func:`keep_reported`, :func:`write_empty`).
"""

from __future__ import annotations

from typing import Any


def task_stem() -> str:
    """``part-<partition>-<attempt>`` for the running Spark task (``part-00000-0`` outside Spark)."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return f"part-{ctx.partitionId() if ctx else 0:05d}-{ctx.attemptNumber() if ctx else 0}"


class PartWriter:
    """One Parquet part file under ``<staging>/<subdir>``, opened at the first write (none if no rows)."""

    def __init__(self, staging: str, subdir: str, schema, **parquet_options) -> None:
        self.staging, self.subdir, self.schema = staging, subdir, schema
        self.options = {"compression": "snappy", **parquet_options}
        self.name = f"{subdir}/{task_stem()}.parquet"
        self.rows = 0
        self._sink: Any = None
        self._writer: Any = None

    def write(self, table, row_group_size: int | None = None) -> None:
        """Append an Arrow table (of :attr:`schema`); one row group per call unless ``row_group_size``."""
        import pyarrow.parquet as pq

        from sparkdl_pipe import storage

        if table.num_rows == 0:
            return
        if self._writer is None:
            fs, base = storage.filesystem(self.staging)
            fs.create_dir(f"{base}/{self.subdir}", recursive=True)
            self._sink = fs.open_output_stream(f"{base}/{self.name}")
            self._writer = pq.ParquetWriter(self._sink, self.schema, **self.options)
        writer = self._writer
        writer.write_table(table, row_group_size=row_group_size or table.num_rows)
        self.rows += table.num_rows

    def close(self) -> tuple[str, int] | None:
        """(name relative to the staging directory, rows), or None when nothing was written."""
        if self._writer is None:
            return None
        self._writer.close()
        self._sink.close()
        self._writer = None
        return self.name, self.rows


def keep_reported(staging: str, subdirs, reported: set[str]) -> None:
    """Remove every file under ``staging``'s ``subdirs`` that no successful task reported. Driver."""
    from sparkdl_pipe import storage

    for d in subdirs:
        for name in storage.list_names(storage.join(staging, d)):
            if f"{d}/{name}" not in reported:
                storage.remove(storage.join(staging, d, name))


def write_empty(url: str, schema) -> None:
    """One empty Parquet file of the Arrow ``schema`` at ``url``: a table with no rows. Driver."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkdl_pipe import storage

    fs, path = storage.filesystem(url)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/part-00000-empty.snappy.parquet") as f:
        pq.write_table(pa.Table.from_batches([], schema=schema), f, compression="snappy")
