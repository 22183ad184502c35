"""Listing an input folder (nothing lost on the way) and reading manifest tables.

Runs on: driver.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from sparkdl_pipe import storage
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.executor.reading import file_url


def _hidden(rel: str) -> bool:
    return any(c.startswith((".", "_")) for c in rel.split("/") if c)


@dataclass(frozen=True)
class InputListing:
    """Every file under an input root: ``files`` to read (as URLs) and ``hidden`` ones skipped."""

    files: list[str]
    hidden: list[str]


def _walk_local(base: str) -> InputListing:
    files: list[str] = []
    hidden: list[str] = []
    seen_dirs: set[str] = set()
    # followlinks: a symlinked folder is read like Spark's listing would; real paths guard loops.
    for dirpath, dirs, filenames in os.walk(base, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs.sort()
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            (hidden if _hidden(rel) else files).append(file_url(full))
    return InputListing(files, hidden)


def list_input_files(root: str) -> InputListing:
    """Every file under ``root`` (recursively), split into files to read and hidden files to skip.

    Hidden means any path component starting with '.' or '_' (``.DS_Store``, ``_SUCCESS``, ``.git/``):
    they are counted and listed in the job's manifest, never read. Everything else is a record,
    including empty files, broken symlinks and unreadable files: reading them in the executors
    turns each into a reject with a reason. Local paths are ``file:`` URLs (:func:`file_url`).
    """
    if storage.is_local(root):
        return _walk_local(storage.local_path(root))
    from pyarrow import fs as pafs

    fs, p = storage.filesystem(root)
    scheme = storage.spark_path(root).split("://", 1)[0]
    files: list[str] = []
    hidden: list[str] = []
    for info in fs.get_file_info(pafs.FileSelector(p, recursive=True)):
        if info.type == pafs.FileType.Directory:
            continue
        url = f"{scheme}://{info.path}"
        (hidden if _hidden(info.path[len(p):]) else files).append(url)
    return InputListing(sorted(files), sorted(hidden))


def read_input_files(spark, url: str, files_per_partition: int = 2000):
    """(DataFrame[path], hidden files) for every non-hidden file under ``url``, recursively.

    The executors read each file by path (:func:`sparkdl_pipe.executor.reading.read_bytes`), so one
    bad file is one reject, not a failed job, and nothing is silently skipped.
    """
    listing = list_input_files(url)
    n = max(1, math.ceil(len(listing.files) / files_per_partition),
            spark.sparkContext.defaultParallelism * 2 if len(listing.files) >= 64 else 1)
    rdd = spark.sparkContext.parallelize([(p,) for p in listing.files], n)
    return spark.createDataFrame(rdd, "path string"), listing.hidden


def read_binary_files(spark, url: str):
    """(DataFrame[path, content], hidden files) for every non-hidden file under ``url``, recursively.

    Used for folders of ``.txt`` files (text ingest and scoring): Spark's ``binaryFile`` source reads
    the bytes. Empty files, which binaryFile skips, are added back with empty content, so the
    executors reject them like any other bad file. Unlike image folders (:func:`read_input_files`),
    an unreadable file fails the Spark job here.
    """
    listing = list_input_files(url)
    spark.conf.set("spark.sql.files.openCostInBytes", str(64 * 1024))
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(16 * 2**20))
    df = spark.read.format("binaryFile").option("recursiveFileLookup", "true") \
        .load(storage.spark_path(url)).select("path", "content")
    empty = []
    if storage.is_local(url):
        from sparkdl_pipe.executor.reading import path_of

        for f in listing.files:
            try:
                if os.path.getsize(path_of(f)) == 0:
                    empty.append("file:" + path_of(f))  # binaryFile's form of a path (not percent-encoded)
            except OSError:
                pass
    if empty:
        df = df.unionByName(spark.createDataFrame([(p, bytearray()) for p in empty], "path string, content binary"))
    return df, listing.hidden


def spread(df, rows_per_partition: int):
    """``df`` repartitioned to at least two tasks per core and at most ``rows_per_partition`` rows each."""
    n = df.count()
    return df.repartition(max(df.sparkSession.sparkContext.defaultParallelism * 2,
                              math.ceil(n / rows_per_partition)))


MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def read_manifest_table(spark, url: str, required: dict[str, str]):
    """A manifest file (CSV/TSV with a header, quoted fields and embedded newlines, or Parquet).

    ``required`` maps column names to the flag that names them, for the error message.
    """
    sp = storage.spark_path(url)
    lower = url.lower()
    if lower.endswith((".parquet", ".pq")):
        df = spark.read.parquet(sp)
    else:
        df = spark.read.option("header", "true").option("multiLine", "true").option("escape", '"') \
            .option("sep", "\t" if lower.endswith(".tsv") else ",").csv(sp)
    for name, flag in required.items():
        if name not in df.columns:
            raise UserInputError(f"manifest {url} has no column {name!r}", f"one of {df.columns}", None,
                                 f"Name it with {flag}")
    return df


def resolved_path(manifest_url: str, col: str):
    """A Column: the manifest's path, made relative to the manifest's folder unless absolute or a URL."""
    from pyspark.sql import functions as F

    base = manifest_url.rsplit("/", 1)[0]
    p = F.col(col).cast("string")
    return F.when(p.rlike(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|/)"), p).otherwise(F.concat(F.lit(base + "/"), p))


def write_rejects(rejects, url: str, count: int) -> None:
    """Write a rejects table (a DataFrame of ``count`` rows) to ``url`` as Parquet.

    With no rejects, one empty Parquet file of the same schema is written directly, without a Spark
    job (the common case costs nothing); ``spark.read.parquet`` reads it as an empty table.
    """
    if count:
        rejects.coalesce(1).write.mode("overwrite").parquet(storage.spark_path(url))
        return
    from pyspark.sql.pandas.types import to_arrow_schema

    from sparkdl_pipe.executor.parts import write_empty

    write_empty(url, to_arrow_schema(rejects.schema))
