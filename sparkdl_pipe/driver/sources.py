"""Reading job inputs, for every kind of data: folders of files (listed, nothing lost on the way),
tables (CSV/TSV, JSON Lines, Parquet), and splits of ingested datasets.

A folder input is listed by the executors (:mod:`sparkdl_pipe.driver.listing`) and each file is
read by path in the executors (:func:`sparkdl_pipe.executor.reading.read_bytes`), so one
unreadable file, broken symlink or FIFO is one reject with a reason, never a failed job. The
driver-side walk here (:func:`list_input_files`) remains for small folders: the part-file folder
of a table input, whose hidden files are counted. A table becomes one uniform DataFrame,
:data:`TABLE_COLUMNS`: rows a reader cannot parse are kept and flagged (``malformed``) so the
executors reject them with a reason.

Runs on: driver.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sparkdl_pipe import storage
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.executor.reading import file_url

#: Table formats, the folder of files, and an ingested dataset's split (scoring).
TABLE_FORMATS = ("csv", "tsv", "jsonl", "parquet")
#: Table formats whose text Spark's reader decodes itself (invalid UTF-8 becomes U+FFFD before we see it).
READER_DECODED = ("csv", "tsv", "jsonl")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSED = (".gz", ".bz2", ".deflate", ".lz4", ".snappy", ".zst")
CORRUPT_COL = "_corrupt_record"
#: The uniform table DataFrame: ``path`` (a file to read, or the record's id, maybe null),
#: ``content`` (the record itself, only for kinds whose tables hold it), ``label_name``,
#: ``split_hint`` and ``malformed`` (the raw record's bytes when the reader could not parse it).
TABLE_COLUMNS = ("path", "content", "label_name", "split_hint", "malformed")


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


def hidden_files(url: str) -> list[str]:
    """The hidden files of a local folder input (a table's part-file folder), for counting."""
    if storage.is_local(url) and os.path.isdir(storage.local_path(url)):
        return list_input_files(url).hidden
    return []


def is_dataset_split(url: str) -> bool:
    """A split of an ingested dataset: ``<dataset>/<train|val|test>`` beside the dataset's manifest.

    (Splits are plain Parquet without Petastorm's ``_common_metadata``: the manifest marks them.)
    The one rule, for every kind of data.
    """
    head, _, name = url.rstrip("/").rpartition("/")
    return name in storage.SPLITS and storage.exists(storage.join(head, storage.MANIFEST_FILE)) \
        and not storage.exists(storage.join(url, storage.MANIFEST_FILE))


def _format_of_name(name: str) -> str | None:
    low = name.lower()
    for c in _COMPRESSED:
        if low.endswith(c):
            low = low[: -len(c)]
            break
    return _SUFFIXES.get(os.path.splitext(low)[1])


def detect_format(url: str, fmt: str = "auto", describe: str = "a folder or a table file") -> str:
    """The input's format: ``folder`` (files to read, laid out as ``[split/]label/...``), a table
    format (from the name: ``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``/``.json``, ``.parquet``/``.pq``,
    compressed ``.gz``/``.bz2`` too), or, for a folder holding only table part files of one format
    (what Spark writes), that format. ``txt`` is accepted as another name of ``folder``.
    """
    if fmt == "txt":
        return "folder"
    if fmt != "auto":
        if fmt not in (*TABLE_FORMATS, "folder"):
            raise UserInputError("--input-format", f"auto, folder or one of {list(TABLE_FORMATS)}", fmt)
        return fmt
    is_dir = storage.is_local(url) and os.path.isdir(storage.local_path(url))
    if not is_dir:
        found = _format_of_name(url.rstrip("/").rsplit("/", 1)[-1])
        if found:
            return found
        if storage.is_local(url):
            raise UserInputError(f"cannot tell the format of {url} from its name", describe, None,
                                 "Pass --input-format")
        return "folder"  # a remote prefix: listed like a folder
    # A table only when every visible file sits at the top and has that one table format: the walk
    # stops at the first file that says otherwise (a million-file folder answers after a few folders).
    base = storage.local_path(url)
    kinds: set[str | None] = set()
    for dirpath, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        for f in files:
            if not f.startswith((".", "_")):
                if dirpath != base:
                    return "folder"  # a file in a subfolder
                kinds.add(_format_of_name(f))
                if None in kinds or len(kinds) > 1:
                    return "folder"
    if len(kinds) == 1:
        return str(kinds.pop())  # e.g. a folder of Parquet part files written by Spark
    return "folder"


def _require(df, url: str, cols: dict[str, str | None]) -> None:
    for flag, name in cols.items():
        if name is not None and name not in df.columns:
            raise UserInputError(f"{url} has no column {name!r}",
                                 f"one of {[c for c in df.columns if c != CORRUPT_COL]}", None,
                                 f"Name the column with {flag}")


def read_table(spark, url: str, fmt: str):
    """A table file (or folder of part files) as a DataFrame; unparsable rows kept in CORRUPT_COL."""
    from pyspark.sql.types import StringType, StructField, StructType

    sp = storage.spark_path(url)
    if fmt == "parquet":
        return spark.read.parquet(sp)
    if fmt == "jsonl":
        # PERMISSIVE keeps unparsable lines, with their raw text in CORRUPT_COL.
        return spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT_COL).json(sp)
    opts = {"header": "true", "multiLine": "true", "escape": '"', "sep": "\t" if fmt == "tsv" else ",",
            "mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COL}
    header = spark.read.options(**opts).csv(sp).columns
    # All columns as strings plus the corrupt-record column: rows with the wrong number of fields
    # are kept and flagged instead of being silently padded or cut.
    schema = StructType([StructField(c, StringType()) for c in header] + [StructField(CORRUPT_COL, StringType())])
    return spark.read.options(**opts).schema(schema).csv(sp)


def table_source(spark, url: str, fmt: str, *, main_col: str, main_flag: str, reads: str,
                 label_col: str | None, id_col: str | None = None, split_col: str | None = None,
                 label_required: bool = True):
    """A table input as the uniform DataFrame of :data:`TABLE_COLUMNS`.

    ``main_col`` names what each row holds for its kind of data: a file path to read (``reads ==
    "path"``, relative to the table's folder unless absolute or a URL), or the record itself
    (``reads == "content"``, as bytes). ``id_col`` names the record (content tables; default: a
    hash of the content). Scoring passes ``label_required=False``: labels are optional there.
    Returns (the DataFrame, whether the table has the label column).
    """
    from pyspark.sql import functions as F

    df = read_table(spark, url, fmt)
    _require(df, url, {main_flag: main_col, "--id-col": id_col})
    if label_required:
        _require(df, url, {"--label-col": label_col})

    def opt(name: str | None):
        return F.col(name).cast("string") if name and name in df.columns else F.lit(None).cast("string")

    # The raw record travels as bytes: it may not be valid UTF-8 (Arrow cannot carry that as a string).
    malformed = F.col(CORRUPT_COL).cast("binary") if CORRUPT_COL in df.columns else F.lit(None).cast("binary")
    if reads == "path":  # no content column: the executors read each file by its path
        cols = [resolved_path(url, main_col).alias("path")]
    else:
        main = F.col(main_col)
        content = main if dict(df.dtypes)[main_col] == "binary" else main.cast("string").cast("binary")
        cols = [opt(id_col).alias("path"), content.alias("content")]
    return df.select(*cols, opt(label_col).alias("label_name"), opt(split_col).alias("split_hint"),
                     malformed.alias("malformed")), label_col in df.columns


def resolved_path(table_url: str, col: str):
    """A Column: the table's path, made relative to the table's folder unless absolute or a URL."""
    from pyspark.sql import functions as F

    base = table_url.rsplit("/", 1)[0]
    p = F.col(col).cast("string")
    return F.when(p.rlike(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|/)"), p).otherwise(F.concat(F.lit(base + "/"), p))


def spread(df, rows_per_partition: int):
    """``df`` repartitioned to at least two tasks per core and at most ``rows_per_partition`` rows each."""
    import math

    n = df.count()
    return df.repartition(max(df.sparkSession.sparkContext.defaultParallelism * 2,
                              math.ceil(n / rows_per_partition)))
