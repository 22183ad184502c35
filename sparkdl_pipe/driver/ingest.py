"""run_ingest: raw records of any kind of data -> Petastorm train/val/test splits + rejects + manifest.

Written once for every kind of data: the kind is a :class:`~sparkdl_pipe.modalities.base.Modality`
(``image``, ``text`` or one you registered) named by the spec's ``kind``. The plan:

1. read the input (:mod:`.sources`): a folder is listed and keyed here on the driver, a table is
   keyed in the executors; the keys give the split, the label and the planned counts;
2. a modality that fits something (text: the vocabulary) prepares every record in a first pass
   and fits on the train split;
3. one Spark job prepares/encodes and writes every split and the rejects, the tasks writing their
   own Parquet part files (:func:`sparkdl_pipe.executor.ingest.write_records`);
4. the tasks' counts, checked against the Parquet footers, account for every input record; the
   manifest is written and everything is published at once.

Runs on: driver (the Spark work itself runs in :mod:`sparkdl_pipe.executor.ingest`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

from sparkdl_pipe import manifest as mf
from sparkdl_pipe import modalities, storage, tasks
from sparkdl_pipe import rejects as rj
from sparkdl_pipe.config import IngestConfig, IngestImagesConfig, IngestTextConfig, as_ingest_config
from sparkdl_pipe.driver.listing import FolderListing, HiddenNames, SkippedHidden, list_folder
from sparkdl_pipe.driver.sources import (
    READER_DECODED,
    detect_format,
    hidden_files,
    spread,
    table_source,
)
from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.executor.ingest import (
    KEYED_DDL,
    SUMMARY_DDL,
    key_buckets,
    key_records,
    prepare_records,
    prepared_ddl,
    split_and_label,
    write_buckets,
    write_records,
)
from sparkdl_pipe.executor.parts import keep_reported, write_empty
from sparkdl_pipe.records import split_of, zones

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What an ingest job wrote. ``input_records == sum(counts.values()) + rejected``.

    ``stats``: the kind's totals over the accepted records (text: ``truncated``, ``tokens``...);
    ``fitted``: sizes of what it fitted (text: ``vocab_size``). Both read as attributes too
    (``res.truncated``, ``res.vocab_size``).
    """

    output: str
    input_records: int
    counts: dict[str, int]
    rejected: int
    rejects_by_reason: dict[str, int]
    skipped_hidden: int
    labels: list[str]
    fingerprint: str
    seconds: float
    stats: dict[str, int] = field(default_factory=dict)
    fitted: dict[str, int] = field(default_factory=dict)
    kind: str = "image"
    #: Seconds of the job's phases (a folder input: ``list_and_count``, listing and counting it).
    phases: dict[str, float] = field(default_factory=dict)

    def __getattr__(self, name: str) -> int:
        for d in ("stats", "fitted"):
            got = self.__dict__.get(d, {})
            if name in got:
                return got[name]
        raise AttributeError(name)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        accepted = sum(self.counts.values())
        extra = modalities.get(self.kind).summary_extras(self.stats, self.fitted)
        return (f"ingested {self.input_records} records in {self.seconds:.1f}s -> {parts}; "
                f"rejected {self.rejected} ({rj.format_counts(self.rejects_by_reason)}); "
                f"skipped hidden files {self.skipped_hidden}; files seen {self.input_records + self.skipped_hidden} "
                f"= {accepted} accepted + {self.rejected} rejected + {self.skipped_hidden} hidden; "
                f"{len(self.labels)} labels; output {self.output}{extra}")


def _double(x: float) -> str:
    """A Python float as a Spark SQL double literal, exactly (Java parses Python's shortest repr back)."""
    return f"CAST('{float(x)!r}' AS DOUBLE)"


def _zones_sql(val_fraction: float, test_fraction: float) -> tuple[str, str]:
    """(band, below_val) as Spark SQL over the record hash ``u``: what :func:`split_of` reads."""
    band = (f"CASE WHEN u < {_double(test_fraction)} THEN 0 "
            f"WHEN u < {_double(test_fraction + val_fraction)} THEN 1 ELSE 2 END")
    return band, f"u < {_double(val_fraction)}"


def split_zones(val_fraction: float, test_fraction: float):
    """(band, below_val) as Spark columns over the record hash ``u``: what :func:`split_of` reads."""
    from pyspark.sql import functions as F

    band, below = _zones_sql(val_fraction, test_fraction)
    return F.expr(band), F.expr(below)


def split_column(hints: set[str], val_fraction: float, test_fraction: float):
    """The final split as a Spark column: :func:`split_of` for every (hint, band, below_val) case.

    One SQL expression (one call into the JVM, where building it from Column objects took about
    2,000); only the split names of :data:`storage.SPLITS` are written into it, never input data.
    """
    from pyspark.sql import functions as F

    band, below = _zones_sql(val_fraction, test_fraction)
    cases = [f"WHEN {'split_hint IS NULL' if h is None else f'split_hint = {h!r}'} AND ({band}) = {b} "
             f"AND ({below}) = {str(bv).lower()} THEN {split_of(h, b, bv, hints)!r}"
             for h in (None, *storage.SPLITS) for b in range(3) for bv in (False, True)]
    return F.expr(f"CASE {' '.join(cases)} ELSE split_hint END")  # any other hint is kept, as split_of keeps it


@dataclass
class IngestStats:
    """Counts of one ingest from a single aggregation over the prepared records. Driver."""

    total: int
    rejects_by_reason: dict[str, int]
    labels: list[str]
    hints: set[str]
    splits: dict[str, dict]


def ingest_stats(prepared, val_fraction: float, test_fraction: float) -> IngestStats:
    """Totals, rejects by reason, labels, input split hints and per-split/per-class counts, in one job."""
    from pyspark.sql import functions as F

    band, below = split_zones(val_fraction, test_fraction)
    rows = prepared.groupBy("reason", "label_name", "split_hint", band.alias("band"), below.alias("below_val")) \
        .agg(F.count(F.lit(1)).alias("n")).collect()
    return tally(rows)


def tally(rows) -> IngestStats:
    """:class:`IngestStats` from count rows (mappings of reason, label_name, split_hint, band,
    below_val, n), however they were counted."""
    rejects: dict[str, int] = {}
    for r in rows:
        if r["reason"] is not None:
            rejects[r["reason"]] = rejects.get(r["reason"], 0) + r["n"]
    ok = [r for r in rows if r["reason"] is None]
    hints = {r["split_hint"] for r in ok if r["split_hint"]}
    splits: dict[str, dict] = {s: {"count": 0, "per_class": {}} for s in storage.SPLITS}
    for r in ok:
        d = splits[split_of(r["split_hint"], r["band"], r["below_val"], hints)]
        d["count"] += r["n"]
        if r["label_name"] is not None:  # regression records have a target, no label
            d["per_class"][r["label_name"]] = d["per_class"].get(r["label_name"], 0) + r["n"]
    labels = mf.natural_sorted({r["label_name"] for r in ok if r["label_name"] is not None})
    return IngestStats(sum(r["n"] for r in rows), rejects, labels, hints, splits)


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
#: many row groups (rows per group chosen for it from the planned counts).
MIN_ROW_GROUPS_PER_SPLIT = 16

#: Records per prepare-and-write task: at least this many (and at least two tasks per core)...
ROWS_PER_TASK = 4000
#: ...and for a big input up to this many, keeping eight tasks per core: a task's fixed costs (its
#: files, the Python worker's garbage collection after it) are then paid 5x less often at 1M files.
MAX_ROWS_PER_TASK = 20_000


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


def _task_count(spark, rows: int, row_bytes: int) -> int:
    par = spark.sparkContext.defaultParallelism
    per_task = min(MAX_ROWS_PER_TASK, max(ROWS_PER_TASK, rows // (8 * par)))
    return max(2 * par, math.ceil(rows / per_task), math.ceil(rows * row_bytes / 2**20 / 128))


def _row_bytes(spec, modality) -> int:
    import numpy as np

    return max(0, math.prod(spec.shape)) * np.dtype(modality.dtype).itemsize  # 0 until fitted (max-len auto)


def _keyed_schema(with_content: bool = False) -> str:
    return KEYED_DDL + (", content binary" if with_content else "") + ", split string, label int"


def key_listing(spark, listing: FolderListing, cfg: IngestConfig):
    """(keyed DataFrame or :class:`BucketedRecords`, :class:`IngestStats`) for a folder listed and keyed in the executors
    (:func:`sparkdl_pipe.driver.listing.list_folder`).

    The listing tasks counted what they found; the records stay in their buckets (random shares of
    every folder, by order key), which go to the write tasks (:class:`BucketedRecords`), and each task
    sorts its records by (split, order key), so each written file holds its split in a shuffled
    order. Nothing here grows with the number of files on the driver, and no Spark job runs.
    """

    from pyspark.sql import functions as F

    if listing.local is not None:  # walked by the driver: counted and keyed here, no Spark job
        return _key_local(spark, listing, cfg)
    st, unlabeled = _tally_listing(listing, listing.counts)  # the listing tasks counted them
    rule = {"labels": st.labels, "hints": sorted(st.hints), "val_fraction": cfg.split.val_fraction,
            "test_fraction": cfg.split.test_fraction, "unlabeled": unlabeled, "missing_label": -1,
            "allowed_labels": listing.allowed_labels}
    n = _task_count(spark, st.total, _row_bytes(cfg.spec, modalities.get(cfg.kind)))
    return BucketedRecords(listing.buckets().filter(F.col("bucket") >= 0).repartition(n, "bucket"), rule), st


def _tally_listing(listing: FolderListing, counts: list[dict]) -> tuple[IngestStats, bool]:
    """(:class:`IngestStats`, unlabeled) from a listing's counts (mappings of entry, reason,
    label_name, split_hint, band, below_val, n); sets the listing's hidden count.

    No label folder at all makes an unlabeled dataset (label -1, no label name), for tasks that need
    none (autoencoder): its ``missing_label`` records are accepted. A folder with some label folders
    still rejects the files outside them."""
    listing.hidden_count = sum(c["n"] for c in counts if c["entry"] == "hidden")
    counted = [c for c in counts if c["entry"] == "record"]
    unlabeled = bool(counted) and all(c["reason"] == rj.NO_LABEL for c in counted)
    if unlabeled:
        counted = [{**c, "reason": None} for c in counted]
    return tally(counted), unlabeled


@dataclass
class BucketedRecords:
    """The records of a folder the executors listed, still in their listing buckets (``frame``: rows
    of :data:`~sparkdl_pipe.executor.listing.LISTING_DDL`, a few thousand, hash-partitioned by
    bucket over the write tasks). Each write task unpacks its buckets, gives every record its split
    and label (``rule``, :func:`~sparkdl_pipe.executor.ingest.key_buckets`) and sorts them: Spark
    moves buckets, never a row per file."""

    frame: Any
    rule: dict

    def keyed(self):
        """The keyed records as a DataFrame (:func:`_keyed_schema`), for a modality's fit pass."""
        return self.frame.mapInPandas(partial(key_buckets, rule=self.rule), _keyed_schema())


def _key_local(spark, listing: FolderListing, cfg: IngestConfig):
    """:func:`key_listing` for a listing the driver walked (a pandas frame): the counts, each record's
    split and label index computed here (:func:`~sparkdl_pipe.executor.ingest.split_and_label`, as
    the write tasks do for an executor listing), so Spark gets the final columns and has no per-row
    expression to evaluate on the driver (Spark folds a projection over a local table into it on
    the driver, interpreted: about 0.8 s of JVM CPU per 16,000 files)."""
    import numpy as np

    val, test = cfg.split.val_fraction, cfg.split.test_fraction
    df = listing.local[listing.local["entry"] != "link"]
    band, below = zones(df["u"].to_numpy(dtype=float, na_value=np.nan), val, test)
    by = ["entry", "reason", "label_name", "split_hint", "band", "below_val"]
    counts = df.assign(band=band, below_val=below).groupby(by, dropna=False, sort=False).size()
    st, unlabeled = _tally_listing(listing, [
        {**{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in zip(by, key, strict=True)}, "n": int(n)}
        for key, n in counts.items()])
    records = df[df["entry"] == "record"]
    if unlabeled:
        records = records.assign(reason=None, message=None)
    keyed = split_and_label(records, val, test, st.hints, st.labels, -1)
    schema = _keyed_schema()
    frame = spark.createDataFrame(keyed, schema) if len(keyed) else spark.createDataFrame([], schema)
    n = _task_count(spark, st.total, _row_bytes(cfg.spec, modalities.get(cfg.kind)))
    return _partition_for_write(frame, n, by_hash=True, with_content=False), st


def _partition_for_write(out, n: int, by_hash: bool, with_content: bool):
    """Keyed records spread over ``n`` write tasks (by the order key's hash, or by range of (split,
    order key)) and sorted by (split, order key) within each task: each file holds its split shuffled."""
    out = out.repartition(n, "order_key") if by_hash else out.repartitionByRange(n, "split", "order_key")
    out = out.sortWithinPartitions("split", "order_key")
    return out.select(*[c.split()[0] for c in _keyed_schema(with_content).split(", ")])


def _assign_splits(spark, keyed, st: IngestStats, cfg: IngestConfig, by_hash: bool = False,
                   with_content: bool = False, missing_label: int | None = None):
    """Keyed records with their final split and label index (``missing_label`` for an accepted
    record whose label is not a class: none, or an unlabeled folder's -1), partitioned for the write job."""
    from pyspark.sql import functions as F

    label_map = F.create_map(*[x for i, name in enumerate(st.labels) for x in (F.lit(name), F.lit(i))]) \
        if st.labels else None  # none: a regression's records carry a target, not a class
    ok = F.col("reason").isNull()
    n = _task_count(spark, st.total, _row_bytes(cfg.spec, modalities.get(cfg.kind)))
    out = keyed.withColumn("split", F.when(ok, split_column(st.hints, cfg.split.val_fraction,
                                                               cfg.split.test_fraction))) \
        .withColumn("label", F.when(ok, label_map[F.col("label_name")] if label_map is not None else F.lit(missing_label))
                    .cast("int"))
    return _partition_for_write(out, n, by_hash, with_content)


def key_dataframe(spark, src, cfg: IngestConfig, root: str | None, unlabeled: bool = False):
    """(keyed DataFrame, :class:`IngestStats`, the persisted keys to unpersist when done) for
    records in Spark (a table, a DataFrame: the columns of :data:`.sources.TABLE_COLUMNS`).

    Keys are computed in the executors and kept; one aggregation gives the counts, then the
    records are range-partitioned by (split, order key). ``unlabeled``: the input has no label
    column; every record is stored with label -1 and no label name, as an unlabeled folder's are.
    """
    from pyspark import StorageLevel

    with_content = "content" in src.columns
    fn = partial(key_records, seed=cfg.split.seed, root=root, from_manifest=root is None,
                 allowed_labels=list(cfg.labels) if cfg.labels is not None else None,
                 target_mode=cfg.target_col is not None, need_label=not unlabeled)
    keyed = src.mapInPandas(fn, KEYED_DDL + (", content binary" if with_content else "")) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    st = ingest_stats(keyed, cfg.split.val_fraction, cfg.split.test_fraction)
    return _assign_splits(spark, keyed, st, cfg, with_content=with_content,
                          missing_label=-1 if unlabeled else None), st, keyed


def run_ingest(spark, cfg: IngestConfig | IngestImagesConfig | IngestTextConfig) -> IngestResult:
    """Ingest raw records into Petastorm splits, a rejects table and a manifest, published atomically.

    Runs on: driver. ``cfg.spec.kind`` names the kind of data.

    >>> from sparkdl_pipe.config import IngestConfig
    >>> from sparkdl_pipe.preprocess.spec import ImageSpec
    >>> run_ingest(spark, IngestConfig("photos/", "datasets/photos", ImageSpec(64, 64, 3))).counts  # doctest: +SKIP
    {'train': 800, 'val': 100, 'test': 100}
    """
    cfg = as_ingest_config(cfg)
    modality = modalities.get(cfg.kind)
    t0 = time.time()
    inp, out = storage.to_url(cfg.input), storage.to_url(cfg.output)
    if not storage.exists(inp):
        raise DatasetError(f"input {cfg.input} does not exist", fix=f"Give {modality.describe_input()}")
    storage.prepare_output(out, cfg.overwrite)
    fmt = detect_format(inp, cfg.input_format, modality.describe_input())
    if fmt == "folder" and cfg.target_col is not None:
        raise UserInputError("--target-col", "a table input (manifest/CSV/TSV/JSON Lines/Parquet) with that column",
                             cfg.input, "A folder layout has no numeric target: list the files and their "
                             "targets in a table")
    if fmt == "folder":
        listing = list_folder(spark, inp, {"seed": cfg.split.seed, "allowed_labels":
                                           list(cfg.labels) if cfg.labels is not None else None,
                                           "val_fraction": cfg.split.val_fraction,
                                           "test_fraction": cfg.split.test_fraction},
                              cfg.driver_listing_max_files)
        try:
            keyed, st = key_listing(spark, listing, cfg)
            listed = time.time() - t0
            return write_ingested(spark, keyed, st, cfg, inp, out, "folder", listing, t0,
                                  phases={"list_and_count": listed})
        finally:
            listing.unpersist()
    flag = "--path-col" if modality.table_reads == "path" else "--text-col"
    src, _ = table_source(spark, inp, fmt, main_col=cfg.main_col, main_flag=flag, reads=modality.table_reads,
                       label_col=cfg.target_col or cfg.label_col, id_col=cfg.id_col, split_col=cfg.split_col)
    src = spread(src, rows_per_partition=20000)
    keyed, st, cached = key_dataframe(spark, src, cfg, None)
    input_kind = "manifest" if modality.table_reads == "path" else fmt
    return write_ingested(spark, keyed, st, cfg, inp, out, input_kind, HiddenNames(hidden_files(inp)), t0, cached,
                          decoded_by_reader=fmt in READER_DECODED)


def run_ingest_images(spark, cfg: IngestImagesConfig) -> IngestResult:
    """:func:`run_ingest` of images (the historical name)."""
    return run_ingest(spark, cfg)


def run_ingest_text(spark, cfg: IngestTextConfig) -> IngestResult:
    """:func:`run_ingest` of text (the historical name)."""
    return run_ingest(spark, cfg)


def run_ingest_dataframe(spark, df, cfg, input_col: str, label_col: str | None,
                         path_col: str | None = None) -> IngestResult:
    """Ingest a DataFrame of records (``input_col``) and labels (``label_col``), any kind of data.

    Runs on: driver. The same preparation, split rule, Petastorm writing, rejects and manifest as
    :func:`run_ingest`; ``cfg.input`` only names the source in the manifest. ``input_col`` is binary
    (the record's bytes: an image file, a text) or string: a path/URL to read for kinds whose
    tables name files (images), the record itself for kinds whose tables hold it (text). Each
    record's split key is ``path_col`` when given, the path (string paths), or a content hash.
    ``label_col`` None: an unlabeled DataFrame, ingested as a folder with no label folders is
    (every record accepted with label -1, ``labels: []``, the manifest's task ``autoencoder``).

    >>> run_ingest_dataframe(spark, df, cfg, input_col="image", label_col="label")  # doctest: +SKIP
    >>> run_ingest_dataframe(spark, photos, cfg, input_col="path", label_col=None).labels  # doctest: +SKIP
    []
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, StringType

    cfg = as_ingest_config(cfg)
    modality = modalities.get(cfg.kind)
    t0 = time.time()
    out = storage.to_url(cfg.output)
    storage.prepare_output(out, cfg.overwrite)
    if label_col is None and cfg.target_col is not None:
        raise UserInputError("a regression target", "a target column", None, "Give the DataFrame's target column")
    for col, what in ((input_col, "input column"), (label_col, "label column")):
        if col is not None and col not in df.columns:
            raise UserInputError(f"{what} {col!r} is not in the DataFrame", f"one of {df.columns}")
    dtype = df.schema[input_col].dataType
    if isinstance(dtype, StringType) and modality.table_reads == "path":
        cols = [F.col(input_col).alias("path")]
    elif isinstance(dtype, (BinaryType, StringType)):
        content = F.col(input_col).cast("binary")
        key = F.col(path_col).cast("string") if path_col else F.concat(F.lit("sha1:"), F.sha2(content, 256))
        cols = [key.alias("path"), content.alias("content")]
    else:
        raise UserInputError(f"input column {input_col!r}", "binary (file bytes) or string", dtype.simpleString())
    label = F.col(label_col) if label_col is not None else F.lit(None)
    src = df.select(*cols, label.cast("string").alias("label_name"), F.lit(None).cast("string").alias("split_hint"))
    keyed, st, cached = key_dataframe(spark, src, cfg, None, unlabeled=label_col is None)
    return write_ingested(spark, keyed, st, cfg, cfg.input, out, "dataframe", HiddenNames([]), t0, cached)


def _fit_pass(spark, keyed, cfg: IngestConfig, modality, decoded_by_reader: bool):
    """A fitted modality's first pass: (prepared records, persisted; spec with the fit; artifacts)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    fn = partial(prepare_records, modality_ref=modality.ref, spec_dict=cfg.spec.to_dict(),
                 decoded_by_reader=decoded_by_reader)
    prepared = keyed.mapInPandas(fn, prepared_ddl(modality)).persist(StorageLevel.MEMORY_AND_DISK)
    train = prepared.filter(F.col("reason").isNull() & (F.col("split") == "train"))
    if not train.limit(1).count():
        prepared.unpersist()
        raise DatasetError(f"no accepted records in the train split of {cfg.input}",
                           fix=f"{modality.kind} ingest fits on the train split; check the split column or fractions")
    spec, artifacts = modality.fit(spark, train, cfg.spec)
    return prepared, spec, artifacts


def _write_job(spark, records, modality, spec, staging: str, rows_per_group: dict[str, int], artifacts,
               from_prepared: bool, decoded_by_reader: bool, task_name: str = "classification"):
    """Run the prepare-and-write job; returns its summary rows after removing any file not named in
    them (left by a failed or duplicate task attempt)."""
    # small Arrow batches: a DataFrame's rows may carry whole files
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "512")
    bc = spark.sparkContext.broadcast(artifacts) if artifacts is not None else None
    args = dict(modality_ref=modality.ref, spec_dict=spec.to_dict(), staging=staging, rows_per_group=rows_per_group,
                artifacts=bc, from_prepared=from_prepared, decoded_by_reader=decoded_by_reader, task_name=task_name)
    try:
        if isinstance(records, BucketedRecords):  # a folder the executors listed: buckets in, keyed in the task
            frame, fn = records.frame, partial(write_buckets, rule=records.rule, **args)
        else:
            frame, fn = records, partial(write_records, **args)
        summary = frame.mapInPandas(fn, SUMMARY_DDL).collect()
    finally:
        if bc is not None:
            bc.unpersist()
    keep_reported(staging, (*storage.SPLITS, "rejects"), {r["name"] for r in summary if r["kind"] == "file"})
    return summary


def _tally_written(summary, modality) -> tuple[dict[str, dict], dict[str, int]]:
    """(per-split counts, per-class counts and stat sums; rejects by reason) from the job's summary."""
    rejects_by_reason: dict[str, int] = {}
    for r in sorted((r for r in summary if r["kind"] == "reject"), key=lambda r: r["reason"]):
        rejects_by_reason[r["reason"]] = rejects_by_reason.get(r["reason"], 0) + r["n"]
    splits: dict[str, dict] = {s: {"count": 0, "per_class": {}, **{k: 0 for k in modality.stat_names}}
                               for s in storage.SPLITS}
    for r in summary:
        if r["kind"] == "class":
            d = splits[r["split"]]
            d["count"] += r["n"]
            if r["label_name"] is not None:
                d["per_class"][r["label_name"]] = d["per_class"].get(r["label_name"], 0) + r["n"]
        elif r["kind"] == "stat":
            splits[r["split"]][r["name"]] += r["n"]
    return splits, rejects_by_reason


def task_schema(schema: dict, task) -> dict:
    """A modality's manifest schema with the task's stored label fields in place of classification's."""
    fields = [f for f in schema["fields"] if f["name"] not in ("label", "label_name")]
    return {**schema, "fields": [fields[0], *task.label_fields_json(), *fields[1:]]}


def target_stats(staging: str, splits: dict[str, dict]) -> dict:
    """Count, mean, std, min and max of the stored float32 ``target``, overall and per split,
    read back from the written Parquet (one float column). Driver."""
    import numpy as np
    import pyarrow.parquet as pq

    def stats(v) -> dict:
        if not len(v):
            return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
        v = v.astype(np.float64)
        return {"count": int(len(v)), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
                "max": float(v.max())}

    per: dict[str, dict] = {}
    every = []
    for s in storage.SPLITS:
        v = np.zeros(0, dtype=np.float32)
        if splits[s]["count"]:
            fs, path = storage.filesystem(storage.join(staging, s))
            v = pq.read_table(path, columns=["target"], filesystem=fs).column("target").to_numpy()
        per[s] = stats(v)
        every.append(v)
    return {**stats(np.concatenate(every)), "splits": per}


def write_ingested(spark, keyed, planned: IngestStats, cfg: IngestConfig, inp: str, out: str,
                   input_kind: str, hidden: FolderListing | HiddenNames, t0: float, cached=None,
                   decoded_by_reader: bool = False, phases: dict[str, float] | None = None) -> IngestResult:
    """Prepare, encode, write and publish keyed records (:func:`key_listing` / :func:`key_dataframe`).

    ``planned``: the counts before reading (a split's count there sizes its row groups). One Spark
    job writes every split and the rejects (after a first pass for a modality that fits); its
    summary gives the final counts, which must equal the Parquet footers and account for every
    input record. Runs on: driver.
    """
    modality = modalities.get(cfg.kind)
    task = tasks.get("regression" if cfg.target_col is not None else "classification")
    spec = cfg.spec
    prepared = artifacts = None
    try:
        total = planned.total
        if total == 0:
            raise DatasetError(f"no records found in {cfg.input}", fix=f"Check the path; hidden files "
                               f"({hidden.count()}) are skipped")
        records = keyed
        if modality.needs_fit:  # the fit may set the stored shape (text: --max-len auto)
            if isinstance(keyed, BucketedRecords):
                keyed = keyed.keyed()
            prepared, spec, artifacts = _fit_pass(spark, keyed, cfg, modality, decoded_by_reader)
            records = prepared
        by_mb = max(1, int(cfg.row_group_mb * 2**20 // (_row_bytes(spec, modality) + 96)))
        # a split of n >= 16 planned rows gets at least 16 row groups (Petastorm deals whole groups)
        rows_per_group = {s: max(1, min(by_mb, planned.splits[s]["count"] // MIN_ROW_GROUPS_PER_SPLIT))
                          for s in storage.SPLITS}
        with storage.staged_output(out, cfg.overwrite) as staging:
            summary = _write_job(spark, records, modality, spec, staging, rows_per_group, artifacts,
                                 prepared is not None, decoded_by_reader, task.name)
            splits, rejects_by_reason = _tally_written(summary, modality)
            n_rej = sum(rejects_by_reason.values())
            rj.enforce_limit(cfg.max_rejects, rejects_by_reason,
                             [(r["name"], r["reason"]) for r in summary if r["kind"] == "reject"], out)
            for s in storage.SPLITS:
                rows, groups = parquet_footers(storage.join(staging, s)) if splits[s]["count"] else (0, 0)
                if rows != splits[s]["count"]:  # the tasks' counts and their files disagree: our bug
                    raise AssertionError(f"split {s}: {rows} rows written, {splits[s]['count']} counted")
                splits[s].update(path=s, row_groups=groups)
            if not n_rej:
                write_empty(storage.join(staging, "rejects"), rj.arrow_schema(modality.key))
            t_hidden = time.time()
            skipped: SkippedHidden = hidden.publish(spark, staging)
            phases = {**(phases or {}), "write": t_hidden - t0 - (phases or {}).get("list_and_count", 0.0),
                      "hidden": time.time() - t_hidden}
            fitted_doc = modality.save_artifacts(artifacts, staging) if artifacts is not None else {}
            labels = planned.labels  # the stored label indices are positions in this list
            doc = {
                "format": mf.FORMAT, "format_version": mf.FORMAT_VERSION, "kind": modality.kind,
                # a folder with no label folders at all: unlabeled, what can be learnt without labels
                "task": task.name if labels or task.name != "classification" else "autoencoder",
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "input": inp, "input_kind": input_kind,
                "input_records": total,
                "columns": {"main": cfg.main_col, "label": None if cfg.target_col else cfg.label_col,
                            "id": cfg.id_col, "split": cfg.split_col,
                            **({"target": cfg.target_col} if cfg.target_col else {})},
                "preprocess": spec.to_dict(), "preprocess_fingerprint": spec.fingerprint(),
                "schema": task_schema(modality.schema_json(spec), task),
                **({"target": target_stats(staging, splits)} if cfg.target_col else {}),
                **fitted_doc,
                **modality.manifest_extras(spec, splits),
                "labels": labels,
                "splits": splits,
                "split_rule": {"seed": cfg.split.seed, "val_fraction": cfg.split.val_fraction,
                               "test_fraction": cfg.split.test_fraction,
                               "input_split_kept": sorted(planned.hints),
                               "hash": "sha1(seed:relative_path)" if input_kind in ("folder", "manifest")
                               else "sha1(seed:id)"},
                "rejects": {"count": n_rej, "per_reason": rejects_by_reason, "path": "rejects",
                            "max_rejects": cfg.max_rejects},
                "skipped": skipped.to_dict(),
                "files_seen": total + skipped.count,
                "row_group_mb": cfg.row_group_mb,
                "versions": mf.versions(),
            }
            fingerprint = write_manifest(staging, doc)
    finally:
        if cached is not None:
            cached.unpersist()
        if prepared is not None:
            prepared.unpersist()
    res = IngestResult(out, total, accounted(total, splits, n_rej), n_rej, rejects_by_reason, skipped.count,
                       labels, fingerprint, time.time() - t0,
                       stats={k: sum(splits[s][k] for s in storage.SPLITS) for k in modality.stat_names},
                       fitted=modality.fitted_sizes(artifacts) if artifacts is not None else {},
                       kind=modality.kind, phases=phases)
    log.info(res.summary())
    return res
