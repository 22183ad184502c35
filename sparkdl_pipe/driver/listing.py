"""Listing a folder input at data-lake scale: the driver lists folders, the executors list files.

A local folder of at most ``driver_max_files`` files (default
:data:`sparkdl_pipe.config.DRIVER_LISTING_MAX_FILES`) is walked by the driver itself, with the same
walking and keying functions the tasks run, and handed to Spark as one local table: a listing job
costs a few seconds of fixed cost (Python workers, a persisted round per symlink level) that a
small folder does not amortise. The walk stops as soon as it sees more files than that, and the
executors list the folder instead; the driver then never holds more than that many rows. Remote
stores are always listed by the executors (their listing calls are slow and worth spreading).

Beyond that, the driver reads the top one or two levels of the input and keeps only folder names (its memory
and work grow with the number of folders, not files); the folders become *units* that Spark tasks
walk in parallel (:mod:`sparkdl_pipe.executor.listing`), keying each file for ingest on the spot.
What the tasks find is persisted on the executors' disks (``DISK_ONLY``: in local mode the
executor is the driver's JVM, whose memory must not grow with the files) and read again by the
counting and writing jobs, so the input is listed exactly once: every count of a job comes from the
same listing.

Symlinked folders: a task never enters one, it reports it. The driver then decides once for the
whole input, in rounds: a link to a folder inside the input root is not followed (that folder is
listed at its real place), a link to a folder outside it is walked once (the first link in path
order names its files), and a link to a folder already walked, or inside one, is not followed
(loops end there). Spark's ``binaryFile``/file index was not used: it drops hidden files
silently (they must be counted and listed), keeps every file's status in the driver's JVM, and
fails its task on an unreadable file.

Hidden files (a path component starting with ``.`` or ``_``) are counted; the manifest shows the
first :data:`HIDDEN_EXAMPLES` in path order, and when there are more, the full list is written
beside the manifest as the Parquet table :data:`HIDDEN_DIR` (column ``path``).

Runs on: driver.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import pickle
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sparkdl_pipe import storage
from sparkdl_pipe.config import DRIVER_LISTING_MAX_FILES
from sparkdl_pipe.executor.listing import (
    HIDDEN,
    HIDDEN_EXAMPLES,
    LINKS,
    LISTED_DDL,
    LISTING_DDL,
    PATHS_SUMMARY_DDL,
    UNIT_DDL,
    is_hidden,
    list_units,
    listed_frame,
    unpickle_entries,
    walk_frame,
    write_paths,
)
from sparkdl_pipe.executor.parts import keep_reported
from sparkdl_pipe.records import path_of

log = logging.getLogger(__name__)

#: The table of every hidden file (``path``), beside the manifest when there are more than the examples.
HIDDEN_DIR = "skipped"
#: Up to this many hidden files, their table is written by the driver (one Spark job to fetch
#: their rows, about 0.2 s at a million files, against 1 s for Python tasks to write it).
DRIVER_HIDDEN_MAX = 200_000
#: Folder levels the driver reads itself before handing folders to the tasks.
DRIVER_LEVELS = 2
#: The driver stops descending once it has this many folders per task slot to hand out.
UNITS_PER_SLOT = 16
#: Folders walked by one listing task (at least two tasks per core).
UNITS_PER_TASK = 64
#: Rounds of symlinked folders followed (each round walks only folders never walked before).
MAX_LINK_ROUNDS = 64


@dataclass(frozen=True)
class SkippedHidden:
    """Hidden files of one input, as a manifest or scoring summary records them."""

    count: int
    examples: list[str]
    table: str | None = None

    def to_dict(self) -> dict:
        d: dict = {"hidden": self.count, "examples": [path_of(h) for h in self.examples]}
        if self.table:
            d["path"] = self.table
        return d


class HiddenNames:
    """Hidden files the driver already holds (a table input's part-file folder: a few names)."""

    def __init__(self, names: list[str]) -> None:
        self.names = sorted(names)

    def count(self) -> int:
        return len(self.names)

    def publish(self, spark, staging: str) -> SkippedHidden:
        """Count them; over :data:`HIDDEN_EXAMPLES`, write the full list into ``staging``."""
        if len(self.names) <= HIDDEN_EXAMPLES:
            return SkippedHidden(len(self.names), self.names)
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs, base = storage.filesystem(storage.join(staging, HIDDEN_DIR))
        fs.create_dir(base, recursive=True)
        with fs.open_output_stream(f"{base}/part-00000-driver.parquet") as f:
            pq.write_table(pa.table({"path": pa.array(self.names, pa.string())}), f, compression="snappy")
        return SkippedHidden(len(self.names), self.names[:HIDDEN_EXAMPLES], HIDDEN_DIR)


@dataclass
class FolderListing:
    """A folder input, listed: by the executors (the persisted rows of every round, :data:`LISTING_DDL`:
    records in buckets, and the counts the tasks made) or walked by the driver (one pandas frame)."""

    root: str
    frames: list = field(default_factory=list)
    #: ``driver`` (walked by the driver, one local table) or ``executors`` (Spark tasks, persisted).
    by: str = "executors"
    units: int = 0
    links_followed: int = 0
    links_skipped: int = 0
    #: Set by the job that counts the records, or by :meth:`count`.
    hidden_count: int | None = None
    #: A listing the driver walked: its rows (pandas, :data:`LISTED_DDL`), counted without a Spark job,
    #: and the session that makes them a DataFrame when one is needed.
    local: Any = None
    spark: Any = None
    #: Listed by the executors: the entries counted by the listing tasks themselves (mappings of
    #: entry, reason, label_name, split_hint, band, below_val, n; band and below_val when keyed with
    #: the split fractions), added up over the tasks.
    counts: list[dict] = field(default_factory=list)
    #: Listed by the executors: the first :data:`HIDDEN_EXAMPLES` hidden paths, in path order.
    hidden_first: list[str] = field(default_factory=list)
    #: The listing key's ``allowed_labels``: a record's reason is made again from them when unpacked.
    allowed_labels: list[str] | None = None

    def buckets(self):
        """Listed by the executors: the ``entries`` rows of every round (records in buckets 0 and up)."""
        from pyspark.sql import functions as F

        out = None
        for f in self.frames:
            f = f.filter(F.col("kind") == "entries")
            out = f if out is None else out.unionByName(f)
        return out

    def _entries(self, records_only: bool = False):
        """The listed rows (:data:`LISTED_DDL`) as a DataFrame, unpacked from the buckets."""
        from pyspark.sql import functions as F

        if not self.frames and self.local is not None:  # walked by the driver: one local table, made when read
            rows = self.local
            self.frames = [self.spark.createDataFrame(rows, LISTED_DDL) if len(rows) else
                           self.spark.createDataFrame([], LISTED_DDL)]
        if self.by == "driver":
            out = self.frames[0]
            return out.filter(F.col("entry") == "record") if records_only else out
        buckets = self.buckets()
        if records_only:
            buckets = buckets.filter(F.col("bucket") >= 0)
        return buckets.mapInPandas(partial(unpickle_entries, allowed_labels=self.allowed_labels), LISTED_DDL)

    def union(self):
        """Every listed row (:data:`LISTED_DDL`): records, hidden files and symlinked folders."""
        return self._entries()

    def records(self, columns: tuple[str, ...] = ()):
        """The files to read (rows of ``entry == 'record'``), with ``columns`` (default: all listed)."""
        from pyspark.sql import functions as F

        df = self._entries(records_only=True).filter(F.col("entry") == "record")
        return df.select(*columns) if columns else df

    def count(self) -> int:
        """How many hidden files."""
        if self.hidden_count is None and self.local is not None:
            self.hidden_count = int((self.local["entry"] == "hidden").sum())
        if self.hidden_count is None:
            self.hidden_count = sum(c["n"] for c in self.counts if c["entry"] == "hidden")
        return self.hidden_count

    def publish(self, spark, staging: str) -> SkippedHidden:
        """The hidden files' count and first names (no Spark job); over :data:`HIDDEN_EXAMPLES`,
        their full list written into ``staging`` by Python tasks."""
        from pyspark.sql import functions as F

        count = self.count()
        if not count:
            return SkippedHidden(0, [])
        if HIDDEN_EXAMPLES < count <= DRIVER_HIDDEN_MAX:  # few: brought to the driver and written there
            if self.by == "driver":
                rows = self.local
            else:
                rows = listed_frame([row for r in self.buckets().filter(F.col("bucket") == HIDDEN).select("payload")
                                     .collect() for row in pickle.loads(r["payload"])])
            names = HiddenNames(list(rows.loc[rows["entry"] == "hidden", "path"]))
            if names.count() != count:  # the listing's counts and its rows disagree: our bug
                raise AssertionError(f"hidden files: {names.count()} listed, {count} counted")
            return names.publish(spark, staging)
        if self.by == "driver":
            examples = sorted(self.local.loc[self.local["entry"] == "hidden", "path"])[:HIDDEN_EXAMPLES]
            hidden = self._entries()
        else:  # the first names the listing tasks kept; the rows in the hidden rows' own buckets
            examples = self.hidden_first
            hidden = self.buckets().filter(F.col("bucket") == HIDDEN).mapInPandas(unpickle_entries, LISTED_DDL)
        hidden = hidden.filter(F.col("entry") == "hidden").select("path")
        if count <= HIDDEN_EXAMPLES:
            return SkippedHidden(count, examples)
        parts = max(1, min(hidden.rdd.getNumPartitions(), math.ceil(count / 200_000)))
        summary = hidden.coalesce(parts).mapInPandas(partial(
            write_paths, staging=staging, subdir=HIDDEN_DIR, examples=0), PATHS_SUMMARY_DDL).collect()
        keep_reported(staging, (HIDDEN_DIR,), {r["name"] for r in summary if r["kind"] == "file"})
        written = sum(r["n"] for r in summary if r["kind"] == "file")
        if written != count:  # the tasks' counts and their files disagree: our bug
            raise AssertionError(f"hidden files: {written} written, {count} counted")
        return SkippedHidden(count, examples, HIDDEN_DIR)

    def unpersist(self) -> None:
        for f in self.frames:
            f.unpersist()
        self.frames = []
        self.local = self.spark = None


def _scan_dirs(d: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(real sub-folders, (symlinked sub-folder, its real path)) of a local folder; files are not kept."""
    dirs: list[str] = []
    links: list[tuple[str, str]] = []
    try:
        with os.scandir(d) as it:
            for e in it:
                try:
                    if e.is_symlink():
                        if e.is_dir():
                            links.append((e.path, os.path.realpath(e.path)))
                    elif e.is_dir(follow_symlinks=False):
                        dirs.append(e.path)
                except OSError:
                    continue
    except OSError as e:
        log.warning("cannot list folder %s (%s): its files are not seen", d, e)
    return sorted(dirs), links


def _scan_remote_dirs(url: str) -> list[str]:
    from pyarrow import fs as pafs

    fs, p = storage.filesystem(url)
    scheme = url.split("://", 1)[0]
    return sorted(f"{scheme}://{i.path}" for i in fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
                  if i.type == pafs.FileType.Directory)


def plan_units(root: str, top: str, target_units: int) -> tuple[list[tuple], list[tuple[str, str]]]:
    """(units for the tasks, symlinked folders met) of the folder ``top`` (inside ``root``).

    The driver reads at most :data:`DRIVER_LEVELS` levels, keeping folder names only: each folder
    it read becomes a ``files`` unit (its own files), each folder below those a ``tree`` unit.
    """
    local = storage.is_local(root)
    frontier = [top]
    units: list[tuple] = []
    links: list[tuple[str, str]] = []
    for _ in range(DRIVER_LEVELS):
        if len(frontier) >= target_units:
            break
        nxt: list[str] = []
        for d in frontier:
            units.append(("files", d, None))
            if local:
                sub, found = _scan_dirs(d)
                links += found
            else:
                sub = _scan_remote_dirs(d)
            nxt += sub
        frontier = nxt
    units += [("tree", d, None) for d in frontier]
    return units, links


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _follow(links: list[tuple[str, str]], walked: list[str]) -> tuple[list[tuple], int]:
    """Units for the symlinked folders to walk next, and how many links are not followed.

    ``walked``: real folders walked so far (the root's first), extended in place.
    """
    units: list[tuple] = []
    skipped = 0
    # by real path, so a folder comes before the folders inside it; then by link path
    for link, real in sorted(links, key=lambda lr: (lr[1], lr[0])):
        if any(_inside(real, w) for w in walked):
            skipped += 1
            continue
        inner = [w for w in walked if _inside(w, real)]  # walked already: not again through this link
        walked.append(real)
        units.append(("tree", link, inner or None))
    return units, skipped


def _walk_on_driver(root: str, top: str, key: dict | None, max_files: int):
    """The listing rows (a pandas DataFrame of :data:`LISTED_DDL`) of a local folder walked here,
    with symlinked folders followed in the same rounds as the tasks'; None beyond ``max_files`` entries.

    Returns (rows, units walked, links followed, links not followed)."""
    import pandas as pd

    units: list[tuple] = [("tree", top, None)]
    walked = [os.path.realpath(top)]
    parts: list[pd.DataFrame] = []
    n = n_units = followed = skipped = 0
    for _ in range(MAX_LINK_ROUNDS):
        if not units:
            break
        n_units += len(units)
        part = walk_frame(pd.DataFrame(units, columns=["kind", "dir", "exclude"]), root, key, max_files - n)
        if part is None:
            return None
        n += len(part)
        parts.append(part)
        links = part[part["entry"] == "link"]
        units, skip = _follow([(path_of(p), t) for p, t in zip(links["path"], links["link_target"], strict=True)],
                              walked)
        followed += len(units)
        skipped += skip
    else:
        log.warning("stopped following symlinked folders after %d rounds", MAX_LINK_ROUNDS)
    return pd.concat(parts, ignore_index=True), n_units, followed, skipped


def list_folder(spark, root: str, key: dict | None = None,
                driver_max_files: int = DRIVER_LISTING_MAX_FILES) -> FolderListing:
    """List a folder input (local path or URL); ``key`` keys records for ingest (``{"seed",
    "allowed_labels"}``, see :func:`sparkdl_pipe.executor.listing.list_units`).

    A local folder of at most ``driver_max_files`` files is walked by the driver (0: never);
    otherwise, and for a remote store, the executors list it and the returned listing's frames
    are persisted: call :meth:`FolderListing.unpersist` when done (harmless either way).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    sc = spark.sparkContext
    local = storage.is_local(root)
    top = storage.local_path(root) if local else root
    if local and driver_max_files > 0:
        walked_here = _walk_on_driver(root, top, key, driver_max_files)
        if walked_here is not None:
            rows, n_units, followed, skipped = walked_here
            log.info("listed %s on the driver: %d entries", root, len(rows))
            return FolderListing(root, [], "driver", n_units, followed, skipped, local=rows, spark=spark)
        log.info("%s holds more than %d files: listed by the executors", root, driver_max_files)
    units, links = plan_units(root, top, UNITS_PER_SLOT * sc.defaultParallelism)
    listing = FolderListing(root, allowed_labels=key.get("allowed_labels") if key else None)
    walked = [os.path.realpath(top)] if local else [top]
    fn = partial(list_units, root=root, key=key)
    counts: dict[tuple, int] = {}
    first_hidden: list[str] = []
    for _ in range(MAX_LINK_ROUNDS):
        if not units:
            break
        n = min(len(units), max(2 * sc.defaultParallelism, math.ceil(len(units) / UNITS_PER_TASK)))
        frame = spark.createDataFrame(sc.parallelize(units, n), UNIT_DDL).mapInPandas(fn, LISTING_DDL) \
            .persist(StorageLevel.DISK_ONLY)
        listing.frames.append(frame)
        listing.units += len(units)
        # this job lists the round (and stores it); what comes back is the tasks' counts and the
        # symlinked folders they met (few: one row per symlinked folder)
        for r in frame.filter((F.col("kind") == "count") | (F.col("bucket") == LINKS)).collect():
            got = pickle.loads(r["payload"])
            if r["kind"] == "count":
                for row in got["counts"]:
                    counts[row[:-1]] = counts.get(row[:-1], 0) + row[-1]
                first_hidden = heapq.nsmallest(HIDDEN_EXAMPLES, first_hidden + got["first_hidden"])
            else:
                links += [(path_of(row[0]), row[-1]) for row in got]
        units, skipped = _follow(links, walked)
        listing.links_followed += len(units)
        listing.links_skipped += skipped
        links = []
    else:
        log.warning("stopped following symlinked folders after %d rounds", MAX_LINK_ROUNDS)
    names = ("entry", "reason", "label_name", "split_hint", "band", "below_val")
    listing.counts = [{**dict(zip(names, what, strict=True)), "n": n} for what, n in counts.items()]
    listing.hidden_first = first_hidden
    return listing


__all__ = ["FolderListing", "HiddenNames", "SkippedHidden", "is_hidden", "list_folder", "plan_units"]
