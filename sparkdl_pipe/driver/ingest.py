"""run_ingest_images: raw image files -> Petastorm train/val/test splits + rejects + manifest.

Runs on: driver (the Spark work itself runs in :mod:`sparkdl_pipe.executor.ingest`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

from sparkdl_pipe import manifest as mf
from sparkdl_pipe import rejects as rj
from sparkdl_pipe import storage
from sparkdl_pipe.config import IngestImagesConfig
from sparkdl_pipe.driver.files import (
    MANIFEST_SUFFIXES,
    list_input_files,
    read_manifest_table,
    resolved_path,
)
from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.executor.ingest import (
    KEYED_DDL,
    SUMMARY_DDL,
    decode_and_write,
    key_record,
    key_records,
    path_of,
    root_prefix,
)
from sparkdl_pipe.executor.parts import keep_reported, write_empty
from sparkdl_pipe.schema import image_unischema, schema_json

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class IngestResult:
    """What an ingest job wrote. ``input_records == sum(counts.values()) + rejected``."""

    output: str
    input_records: int
    counts: dict[str, int]
    rejected: int
    rejects_by_reason: dict[str, int]
    skipped_hidden: int
    labels: list[str]
    fingerprint: str
    seconds: float

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        accepted = sum(self.counts.values())
        return (f"ingested {self.input_records} records in {self.seconds:.1f}s -> {parts}; "
                f"rejected {self.rejected} ({rj.format_counts(self.rejects_by_reason)}); "
                f"skipped hidden files {self.skipped_hidden}; files seen {self.input_records + self.skipped_hidden} "
                f"= {accepted} accepted + {self.rejected} rejected + {self.skipped_hidden} hidden; "
                f"{len(self.labels)} labels; output {self.output}")


def _read_manifest(spark, url: str, cfg: IngestImagesConfig):
    from pyspark.sql import functions as F

    df = read_manifest_table(spark, url, {cfg.manifest_path_col: "--path-col",
                                          cfg.manifest_label_col: "--label-col"})
    split = F.col(cfg.manifest_split_col) if cfg.manifest_split_col in df.columns else F.lit(None)
    return df.select(resolved_path(url, cfg.manifest_path_col).alias("path"),
                     F.col(cfg.manifest_label_col).cast("string").alias("label_name"),
                     split.cast("string").alias("split_hint"))


def split_of(hint: str | None, band: int, below_val: bool, hints: set[str]) -> str:
    """The split rule, for a record's input split ``hint`` (or None), its hash ``band`` (0: below
    test_fraction, 1: below test+val, 2: above) and whether its hash is below val_fraction.

    Keep the input's own split; carve val out of train when the input has no val split. The one
    definition: :func:`split_column` (Spark) and :func:`ingest_stats` (driver counts) both use it.
    """
    if hint is None:
        return ("test", "val", "train")[band]
    if "val" not in hints and hint == "train" and below_val:
        return "val"
    return hint


def split_zones(val_fraction: float, test_fraction: float):
    """(band, below_val) as Spark columns over the record hash ``u``: what :func:`split_of` reads."""
    from pyspark.sql import functions as F

    u = F.col("u")
    return F.when(u < test_fraction, 0).when(u < test_fraction + val_fraction, 1).otherwise(2), u < val_fraction


def split_column(hints: set[str], val_fraction: float, test_fraction: float):
    """The final split as a Spark column: :func:`split_of` for every (hint, band, below_val) case."""
    from pyspark.sql import functions as F

    band, below = split_zones(val_fraction, test_fraction)
    hint = F.col("split_hint")
    cases = [((hint.isNull() if h is None else hint == h) & (band == b) & (below == bv), split_of(h, b, bv, hints))
             for h in (None, *storage.SPLITS) for b in range(3) for bv in (False, True)]
    out = F.when(*cases[0])
    for cond, value in cases[1:]:
        out = out.when(cond, value)
    return out.otherwise(hint)  # any other hint is kept, as split_of keeps it


@dataclass
class IngestStats:
    """Counts of one ingest from a single aggregation over the prepared records. Driver."""

    total: int
    rejects_by_reason: dict[str, int]
    labels: list[str]
    hints: set[str]
    splits: dict[str, dict]


def zone_of(u: float, val_fraction: float, test_fraction: float) -> tuple[int, bool]:
    """(band, below_val) of a record hash ``u``: :func:`split_zones` on the driver."""
    return (0 if u < test_fraction else 1 if u < test_fraction + val_fraction else 2), u < val_fraction


def ingest_stats(prepared, val_fraction: float, test_fraction: float, sums: dict | None = None) -> IngestStats:
    """Totals, rejects by reason, labels, input split hints and per-split/per-class counts, in one job.

    ``sums``: extra per-split sums (name -> Spark column over accepted rows, e.g. truncated texts).
    """
    from pyspark.sql import functions as F

    sums = sums or {}
    band, below = split_zones(val_fraction, test_fraction)
    rows = prepared.groupBy("reason", "label_name", "split_hint", band.alias("band"), below.alias("below_val")) \
        .agg(F.count(F.lit(1)).alias("n"), *[F.sum(c).alias(k) for k, c in sums.items()]).collect()
    return tally(rows, list(sums))


def tally(rows, sums: list[str] | None = None) -> IngestStats:
    """:class:`IngestStats` from count rows (mappings of reason, label_name, split_hint, band,
    below_val, n and the ``sums`` names), however they were counted."""
    sums = sums or []
    rejects: dict[str, int] = {}
    for r in rows:
        if r["reason"] is not None:
            rejects[r["reason"]] = rejects.get(r["reason"], 0) + r["n"]
    ok = [r for r in rows if r["reason"] is None]
    hints = {r["split_hint"] for r in ok if r["split_hint"]}
    splits: dict[str, dict] = {s: {"count": 0, "per_class": {}, **{k: 0 for k in sums}} for s in storage.SPLITS}
    for r in ok:
        d = splits[split_of(r["split_hint"], r["band"], r["below_val"], hints)]
        d["count"] += r["n"]
        d["per_class"][r["label_name"]] = d["per_class"].get(r["label_name"], 0) + r["n"]
        for k in sums:
            d[k] += int(r[k] or 0)
    return IngestStats(sum(r["n"] for r in rows), rejects, mf.natural_sorted({r["label_name"] for r in ok}),
                       hints, splits)


def write_manifest(staging: str, doc: dict) -> str:
    """Fingerprint the manifest ``doc`` and write it into the staging directory; returns the fingerprint."""
    doc["fingerprint"] = mf.fingerprint(doc)
    storage.write_json(storage.join(staging, storage.MANIFEST_FILE), doc)
    return str(doc["fingerprint"])


def accounted(total: int, splits: dict[str, dict], rejected: int) -> dict[str, int]:
    """Rows per split, after checking that every input record is in a split or a reject (our invariant)."""
    counts = {s: splits[s]["count"] for s in storage.SPLITS}
    if sum(counts.values()) + rejected != total:  # a failure here is our bug
        raise AssertionError(f"ingest lost records: {total} in, {counts} + {rejected} rejected")
    return counts


#: Petastorm deals whole row groups to ranks, so every split with the rows for it gets at least this
#: many row groups (text: one file per write task and split; images: rows per group chosen for it).
MIN_ROW_GROUPS_PER_SPLIT = 16


@contextlib.contextmanager
def parquet_row_groups(spark, row_group_mb: float):
    """Spark's Parquet writer makes row groups of about ``row_group_mb`` inside this block.

    This replaces Petastorm's ``materialize_dataset``, which also stores the schema as a *pickle*
    in ``_common_metadata`` (and Petastorm's readers unpickle it): our splits are plain Parquet,
    readable by Petastorm's batch reader, with the schema in the JSON manifest. No summary
    ``_metadata`` is written and no Spark job counts row groups (see :func:`write_splits`).
    """
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    keys = {"parquet.block.size": str(max(64 * 1024, int(row_group_mb * 2**20))),
            "parquet.block.size.row.check.min": "10", "parquet.row-group.size.row.check.min": "10",
            "parquet.summary.metadata.level": "NONE"}
    old = {k: conf.get(k) for k in keys}
    for k, v in keys.items():
        conf.set(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                conf.unset(k)
            else:
                conf.set(k, v)


def parquet_footers(url: str) -> tuple[int, int]:
    """(rows, row groups) of the Parquet files of a split, from their footers (any storage URL)."""
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    fs, base = storage.filesystem(url)
    rows = groups = 0
    for info in fs.get_file_info(pafs.FileSelector(base)):
        if info.is_file and info.base_name.endswith(".parquet"):
            with fs.open_input_file(info.path) as f:
                md = pq.ParquetFile(f).metadata
                rows += md.num_rows
                groups += md.num_row_groups
    return rows, groups


def write_splits(spark, df, staging: str, counts: dict[str, int], row_bytes: int, row_group_mb: float,
                 unischema=None) -> dict[str, int]:
    """Write every split of ``df`` (a ``split`` column) as Parquet Petastorm reads, in ONE Spark job.

    One shuffle by the stable ``order_key`` (rows shuffled the same on every run), ``partitionBy``
    split, then each ``split=NAME`` directory is renamed to ``NAME``. Every task writes one file per
    split, so a split gets at least :data:`MIN_ROW_GROUPS_PER_SPLIT` row groups where it has the rows,
    each row group at most ``row_group_mb``. The row counts read back from the Parquet footers must
    equal ``counts`` (else nothing is published). Returns the row groups per split. Runs on: driver.
    """
    from pyspark.sql import functions as F

    schema = unischema or image_unischema()
    total_mb = sum(counts.values()) * row_bytes / 2**20
    n = max(MIN_ROW_GROUPS_PER_SPLIT, spark.sparkContext.defaultParallelism, math.ceil(total_mb / 128))
    out = df.select(*schema.fields.keys(), "split", "order_key").repartition(n, F.col("order_key")) \
        .sortWithinPartitions("split", "order_key").drop("order_key")
    parts = storage.join(staging, "_splits")
    with parquet_row_groups(spark, row_group_mb):
        out.write.mode("overwrite").partitionBy("split").option("compression", "snappy") \
            .parquet(storage.spark_path(parts))
    groups: dict[str, int] = {}
    for s in storage.SPLITS:
        if not counts.get(s):
            groups[s] = 0
            continue
        storage.move(storage.join(parts, f"split={s}"), storage.join(staging, s))
        rows, groups[s] = parquet_footers(storage.join(staging, s))
        if rows != counts[s]:  # the driver's counts and what Spark wrote disagree: our bug
            raise AssertionError(f"split {s}: {rows} rows written, {counts[s]} counted")
    storage.remove(parts)
    return groups


#: Records per decode-and-write task (there are at least two tasks per core).
ROWS_PER_TASK = 4000


def _task_count(spark, rows: int, row_bytes: int) -> int:
    return max(2 * spark.sparkContext.defaultParallelism, math.ceil(rows / ROWS_PER_TASK),
               math.ceil(rows * row_bytes / 2**20 / 128))


def _keyed_schema(with_content: bool = False) -> str:
    return KEYED_DDL + (", content binary" if with_content else "") + ", split string, label int"


def key_listing(spark, files: list[str], root: str, cfg: IngestImagesConfig):
    """(keyed DataFrame, :class:`IngestStats`) for a folder listing, keyed and split on the driver.

    The driver has every path already (it listed them), so hashing, labels and the split rule run
    here and no Spark job is needed before decoding. Records are sorted by (split, order key) and
    cut into contiguous tasks: the written files are the split in its shuffled order.
    """
    allowed = set(cfg.labels) if cfg.labels is not None else None
    root_path = root_prefix(root)
    val, test = cfg.split.val_fraction, cfg.split.test_fraction
    keyed = [(p, *key_record(p, None, None, cfg.split.seed, root_path, False, allowed)) for p in files]
    groups: dict[tuple, int] = {}
    for _p, _rel, label, hint, u, _o, reason, _m in keyed:
        k = (reason, label if reason is None else None, hint, *zone_of(u, val, test))
        groups[k] = groups.get(k, 0) + 1
    st = tally([dict(zip(("reason", "label_name", "split_hint", "band", "below_val"), k, strict=True), n=n)
                for k, n in groups.items()])
    index = {name: i for i, name in enumerate(st.labels)}
    rows = [(*r, split_of(r[3], *zone_of(r[4], val, test), st.hints), index[r[2]]) if r[6] is None
            else (*r, None, None) for r in keyed]
    rows.sort(key=lambda r: (r[8] or "", r[5]))
    n = _task_count(spark, len(rows), cfg.image.height * cfg.image.width * cfg.image.channels)
    rdd = spark.sparkContext.parallelize(rows, max(1, min(n, len(rows))))
    return spark.createDataFrame(rdd, _keyed_schema()), st


def key_dataframe(spark, src, cfg: IngestImagesConfig, root: str | None):
    """(keyed DataFrame, :class:`IngestStats`, the persisted keys to unpersist when done) for
    records in Spark (a manifest table, a DataFrame).

    Keys are computed in the executors and kept; one aggregation gives the counts, then the
    records are range-partitioned by (split, order key).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    with_content = "content" in src.columns
    fn = partial(key_records, seed=cfg.split.seed, root=root, from_manifest=root is None,
                 allowed_labels=list(cfg.labels) if cfg.labels is not None else None)
    keyed = src.mapInPandas(fn, KEYED_DDL + (", content binary" if with_content else "")) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    st = ingest_stats(keyed, cfg.split.val_fraction, cfg.split.test_fraction)
    label_map = F.create_map(*[x for i, name in enumerate(st.labels) for x in (F.lit(name), F.lit(i))])
    ok = F.col("reason").isNull()
    n = _task_count(spark, st.total, cfg.image.height * cfg.image.width * cfg.image.channels)
    out = keyed.withColumn("split", F.when(ok, split_column(st.hints, cfg.split.val_fraction,
                                                               cfg.split.test_fraction))) \
        .withColumn("label", F.when(ok, label_map[F.col("label_name")]).cast("int")) \
        .repartitionByRange(n, "split", "order_key").sortWithinPartitions("split", "order_key")
    return out.select(*[c.split()[0] for c in _keyed_schema(with_content).split(", ")]), st, keyed


def run_ingest_images(spark, cfg: IngestImagesConfig) -> IngestResult:
    """Ingest raw images into Petastorm splits, a rejects table and a manifest, published atomically.

    Runs on: driver.

    >>> from sparkdl_pipe.config import IngestImagesConfig
    >>> from sparkdl_pipe.preprocess.spec import ImageSpec
    >>> cfg = IngestImagesConfig("photos/", "datasets/photos", ImageSpec(64, 64, 3))  # doctest: +SKIP
    >>> run_ingest_images(spark, cfg).counts  # doctest: +SKIP
    {'train': 800, 'val': 100, 'test': 100}
    """
    t0 = time.time()
    inp, out = storage.to_url(cfg.input), storage.to_url(cfg.output)
    if not storage.exists(inp):
        raise DatasetError(f"input {cfg.input} does not exist", fix="Give a folder of <label>/ image folders "
                           "or a manifest file (.csv/.parquet)")
    storage.prepare_output(out, cfg.overwrite)
    is_manifest = inp.lower().endswith(MANIFEST_SUFFIXES) and not (
        storage.is_local(inp) and os.path.isdir(storage.local_path(inp)))
    if is_manifest:
        keyed, st, cached = key_dataframe(spark, _read_manifest(spark, inp, cfg), cfg, None)
        return write_ingested(spark, keyed, st, cfg, inp, out, "manifest", [], t0, cached)
    listing = list_input_files(inp)
    keyed, st = key_listing(spark, listing.files, inp, cfg)
    return write_ingested(spark, keyed, st, cfg, inp, out, "folder", listing.hidden, t0)


def run_ingest_dataframe(spark, df, cfg: IngestImagesConfig, input_col: str, label_col: str,
                         path_col: str | None = None) -> IngestResult:
    """Ingest a DataFrame of images (``input_col``: file bytes, or a path/URL string) and labels.

    Runs on: driver. The same decoding, split rule, Petastorm writing, rejects and manifest as
    :func:`run_ingest_images`; ``cfg.input`` only names the source in the manifest. Each record's
    split key is ``path_col`` when given, the path (string input), or ``sha1:<content hash>``.

    >>> run_ingest_dataframe(spark, df, cfg, input_col="image", label_col="label")  # doctest: +SKIP
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, StringType

    t0 = time.time()
    out = storage.to_url(cfg.output)
    storage.prepare_output(out, cfg.overwrite)
    for col, what in ((input_col, "input column"), (label_col, "label column")):
        if col not in df.columns:
            raise UserInputError(f"{what} {col!r} is not in the DataFrame", f"one of {df.columns}")
    kind = df.schema[input_col].dataType
    if isinstance(kind, BinaryType):
        content = F.col(input_col)
        key = F.col(path_col).cast("string") if path_col else F.concat(F.lit("sha1:"), F.sha2(content, 256))
        cols = [key.alias("path"), content.alias("content")]
    elif isinstance(kind, StringType):
        cols = [F.col(input_col).alias("path")]
    else:
        raise UserInputError(f"input column {input_col!r}", "binary (image file bytes) or string (path/URL)",
                             kind.simpleString())
    src = df.select(*cols, F.col(label_col).cast("string").alias("label_name"),
                    F.lit(None).cast("string").alias("split_hint"))
    keyed, st, cached = key_dataframe(spark, src, cfg, None)
    return write_ingested(spark, keyed, st, cfg, cfg.input, out, "dataframe", [], t0, cached)


def _collect_written(spark, keyed, spec, staging: str, rows_per_group: dict[str, int]):
    """Run the decode-and-write job; returns its summary rows after removing any file not named in
    them (left by a failed or duplicate task attempt)."""
    # small Arrow batches: a DataFrame's rows may carry whole image files
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "512")
    summary = keyed.mapInPandas(partial(decode_and_write, spec_dict=spec.to_dict(), staging=staging,
                                        rows_per_group=rows_per_group), SUMMARY_DDL).collect()
    keep_reported(staging, (*storage.SPLITS, "rejects"), {r["name"] for r in summary if r["kind"] == "file"})
    return summary


def write_ingested(spark, keyed, planned: IngestStats, cfg: IngestImagesConfig, inp: str, out: str,
                   input_kind: str, hidden: list[str], t0: float, cached=None) -> IngestResult:
    """Decode, write and publish keyed records (:func:`key_listing` / :func:`key_dataframe`).

    ``planned``: the counts before decoding (a split's count there sizes its row groups). One Spark
    job decodes and writes every split and the rejects; its summary gives the final counts, which
    must equal the Parquet footers and account for every input record. Runs on: driver.
    """
    spec = cfg.image
    try:
        total = planned.total
        if total == 0:
            raise DatasetError(f"no files found under {cfg.input}", fix="Check the path; hidden files "
                               f"({len(hidden)}) are skipped")
        row_bytes = spec.height * spec.width * spec.channels + 96
        by_mb = max(1, int(cfg.row_group_mb * 2**20 // row_bytes))
        # a split of n >= 16 planned rows gets at least 16 row groups (Petastorm deals whole groups)
        rows_per_group = {s: max(1, min(by_mb, planned.splits[s]["count"] // MIN_ROW_GROUPS_PER_SPLIT))
                          for s in storage.SPLITS}
        with storage.staged_output(out, cfg.overwrite) as staging:
            summary = _collect_written(spark, keyed, spec, staging, rows_per_group)
            rejects_by_reason: dict[str, int] = {}
            for r in sorted((r for r in summary if r["kind"] == "reject"), key=lambda r: r["reason"]):
                rejects_by_reason[r["reason"]] = rejects_by_reason.get(r["reason"], 0) + r["n"]
            n_rej = sum(rejects_by_reason.values())
            rj.enforce_limit(cfg.max_rejects, rejects_by_reason,
                             [(r["name"], r["reason"]) for r in summary if r["kind"] == "reject"], out)
            splits: dict[str, dict] = {s: {"count": 0, "per_class": {}} for s in storage.SPLITS}
            for r in summary:
                if r["kind"] == "class":
                    d = splits[r["split"]]
                    d["count"] += r["n"]
                    d["per_class"][r["label_name"]] = d["per_class"].get(r["label_name"], 0) + r["n"]
            for s in storage.SPLITS:
                rows, groups = parquet_footers(storage.join(staging, s)) if splits[s]["count"] else (0, 0)
                if rows != splits[s]["count"]:  # the tasks' counts and their files disagree: our bug
                    raise AssertionError(f"split {s}: {rows} rows written, {splits[s]['count']} counted")
                splits[s].update(path=s, row_groups=groups)
            if not n_rej:
                write_empty(storage.join(staging, "rejects"), rj.arrow_schema())
            doc = {
                "format": mf.FORMAT, "format_version": mf.FORMAT_VERSION, "kind": "image",
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "input": inp, "input_kind": input_kind,
                "input_records": total,
                "preprocess": spec.to_dict(), "preprocess_fingerprint": spec.fingerprint(),
                "schema": schema_json(spec.shape),
                "labels": planned.labels,
                "splits": splits,
                "split_rule": {"seed": cfg.split.seed, "val_fraction": cfg.split.val_fraction,
                               "test_fraction": cfg.split.test_fraction,
                               "input_split_kept": sorted(planned.hints), "hash": "sha1(seed:relative_path)"},
                "rejects": {"count": n_rej, "per_reason": rejects_by_reason, "path": "rejects",
                            "max_rejects": cfg.max_rejects},
                "skipped": {"hidden": len(hidden), "examples": [path_of(h) for h in hidden[:20]]},
                "files_seen": total + len(hidden),
                "row_group_mb": cfg.row_group_mb,
                "versions": mf.versions(),
            }
            fingerprint = write_manifest(staging, doc)
    finally:
        if cached is not None:
            cached.unpersist()
    res = IngestResult(out, total, accounted(total, splits, n_rej), n_rej, rejects_by_reason, len(hidden),
                       planned.labels, fingerprint, time.time() - t0)
    log.info(res.summary())
    return res
