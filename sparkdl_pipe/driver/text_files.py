"""Reading text corpora with Spark: CSV/TSV, JSON Lines, Parquet tables, or folders of ``.txt`` files.

Every input record becomes one row of a uniform DataFrame, nothing dropped on the way: rows a
reader cannot parse are kept and flagged (``malformed``) so the executors reject them with a reason.

Runs on: driver.
"""

from __future__ import annotations

import os

from sparkdl_pipe import storage
from sparkdl_pipe.driver.files import read_binary_files
from sparkdl_pipe.errors import UserInputError

TEXT_FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".txt": "txt"}
_COMPRESSED = (".gz", ".bz2", ".deflate", ".lz4", ".snappy", ".zst")
CORRUPT_COL = "_corrupt_record"


def _format_of_name(name: str) -> str | None:
    low = name.lower()
    for c in _COMPRESSED:
        if low.endswith(c):
            low = low[: -len(c)]
            break
    return _SUFFIXES.get(os.path.splitext(low)[1])


def detect_text_format(url: str, fmt: str = "auto") -> str:
    """The input's format: ``fmt`` when given, else from the file extension (``.csv``, ``.tsv``,
    ``.jsonl``/``.ndjson``/``.json``, ``.parquet``, compressed ``.gz``/``.bz2`` too), else, for a
    folder, ``txt`` when it holds label folders of text files, or the one table format its files share.
    """
    if fmt != "auto":
        if fmt not in TEXT_FORMATS:
            raise UserInputError("--input-format", f"auto or one of {list(TEXT_FORMATS)}", fmt)
        return fmt
    if not (storage.is_local(url) and os.path.isdir(storage.local_path(url))):
        found = _format_of_name(url.rstrip("/").rsplit("/", 1)[-1])
        if found and found != "txt":
            return found
        if not storage.is_local(url):
            raise UserInputError(f"cannot tell the format of {url}", f"one of {list(TEXT_FORMATS)}", None,
                                 "Pass --input-format")
        raise UserInputError(f"cannot tell the format of {url} from its name",
                             "a .csv/.tsv/.jsonl/.parquet file or a folder of <label>/*.txt", None,
                             "Pass --input-format")
    base = storage.local_path(url)
    kinds: set[str | None] = set()
    nested = False
    for dirpath, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        for f in files:
            if not f.startswith((".", "_")):
                kinds.add(_format_of_name(f))
                nested = nested or dirpath != base
    tables = {k for k in kinds if k not in (None, "txt")}
    if len(tables) == 1 and not nested and kinds <= tables:
        return tables.pop()  # e.g. a folder of Parquet part files written by Spark
    if nested or kinds == {"txt"}:
        return "txt"
    raise UserInputError(f"cannot tell the format of folder {url} (file kinds: {sorted(map(str, kinds))})",
                         f"one of {list(TEXT_FORMATS)}", None, "Pass --input-format")


def _require(df, url: str, cols: dict[str, str | None]) -> None:
    for flag, name in cols.items():
        if name is not None and name not in df.columns:
            raise UserInputError(f"{url} has no column {name!r}",
                                 f"one of {[c for c in df.columns if c != CORRUPT_COL]}", None,
                                 f"Name the column with {flag}")


def _read_table(spark, url: str, fmt: str):
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


def read_text_input(spark, url: str, fmt: str, text_col: str, label_col: str, id_col: str | None = None,
                    split_col: str | None = None, label_required: bool = True):
    """(DataFrame, hidden files) for a text input in format ``fmt`` (see :func:`detect_text_format`).

    Tables give ``id, data (binary UTF-8 text), label_name, split_hint, malformed`` (the raw
    record's bytes when the reader could not parse it); a ``txt`` folder
    gives binaryFile's ``path, content``. Scoring passes ``label_required=False``: labels are optional.
    Hidden files (names starting with '.' or '_') of folders are returned for counting.
    """
    from pyspark.sql import functions as F

    if fmt == "txt":
        return read_binary_files(spark, url)
    if storage.is_local(url) and os.path.isdir(storage.local_path(url)):
        from sparkdl_pipe.driver.files import list_input_files

        hidden = list_input_files(url).hidden
    else:
        hidden = []
    df = _read_table(spark, url, fmt)
    _require(df, url, {"--text-col": text_col, "--id-col": id_col})
    if label_required:
        _require(df, url, {"--label-col": label_col})

    def opt(name: str | None):
        return F.col(name).cast("string") if name and name in df.columns else F.lit(None).cast("string")

    # The raw record travels as bytes: it may not be valid UTF-8 (Arrow cannot carry that as a string).
    malformed = F.col(CORRUPT_COL).cast("binary") if CORRUPT_COL in df.columns else F.lit(None).cast("binary")
    text = F.col(text_col)
    data = text if dict(df.dtypes)[text_col] == "binary" else text.cast("string").cast("binary")
    out = df.select(opt(id_col).alias("id"), data.alias("data"), opt(label_col).alias("label_name"),
                    opt(split_col).alias("split_hint"), malformed.alias("malformed"))
    return out, hidden
