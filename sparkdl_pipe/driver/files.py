"""Reading a folder of files with Spark's binaryFile source, with nothing lost on the way.

Runs on: driver.
"""

from __future__ import annotations

import os

from sparkdl_pipe import storage
from sparkdl_pipe.errors import UserInputError


def _hidden(rel: str) -> bool:
    return any(c.startswith((".", "_")) for c in rel.split("/") if c)


def list_input_files(root: str) -> tuple[list[str], list[str]]:
    """(hidden files, empty files) under ``root``: the two kinds Spark's binaryFile never returns.

    Spark's listing skips names starting with '.' or '_' and its file scan skips 0-byte files;
    listing them here means they are counted (hidden) or rejected (empty), never silently lost.
    Paths are in Spark's form (``file:/...``) so they line up with binaryFile's ``path`` column.
    """
    hidden: list[str] = []
    empty: list[str] = []
    if storage.is_local(root):
        base = storage.local_path(root)
        for dirpath, _dirs, filenames in os.walk(base):
            for f in filenames:
                full = os.path.join(dirpath, f)
                if _hidden(os.path.relpath(full, base).replace(os.sep, "/")):
                    hidden.append("file:" + full)
                elif os.path.getsize(full) == 0:
                    empty.append("file:" + full)
        return hidden, empty
    from pyarrow import fs as pafs

    fs, p = storage._fs(root)
    scheme = storage.spark_path(root).split("://", 1)[0]
    for info in fs.get_file_info(pafs.FileSelector(p, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        url = f"{scheme}://{info.path}"
        if _hidden(info.path[len(p):]):
            hidden.append(url)
        elif info.size == 0:
            empty.append(url)
    return hidden, empty


def read_binary_files(spark, url: str):
    """(DataFrame[path, content], hidden files) for every file under ``url``, recursively.

    Empty files, which binaryFile skips, are added back with empty content, so the executors'
    decoder rejects them like any other bad file. Hidden files are returned for counting.
    Partitions are sized for many small files (the default packs tens of thousands of thumbnails
    into one task).
    """
    hidden, empty = list_input_files(url)
    spark.conf.set("spark.sql.files.openCostInBytes", str(64 * 1024))
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(16 * 2**20))
    df = spark.read.format("binaryFile").option("recursiveFileLookup", "true") \
        .load(storage.spark_path(url)).select("path", "content")
    if empty:
        df = df.unionByName(spark.createDataFrame([(p, bytearray()) for p in empty], "path string, content binary"))
    return df, hidden


def spread(df, rows_per_partition: int):
    """``df`` repartitioned to at least two tasks per core and at most ``rows_per_partition`` rows each."""
    import math

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
