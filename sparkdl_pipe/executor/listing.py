"""Walking the folders of an input in Spark tasks: each task lists its share of the folders and
yields every file it finds as a row, keyed on the spot (split key, label, split hint), so the paths
of a folder input never all sit in one process.

The driver (:mod:`sparkdl_pipe.driver.listing`) hands the tasks *units*: ``files`` (the files
directly in one folder) or ``tree`` (a folder and everything below it). A task never follows a
symlinked folder: it yields it as a ``link`` row and the driver decides, once for the whole input,
whether it is walked (see the driver module). Every entry that is not a directory is a file: empty
files, broken symlinks, FIFOs and unreadable files are records here (reading them in the write job
makes each a reject with a reason); files with a path component starting with ``.`` or ``_`` are
``hidden`` rows, counted and listed, never read.

Runs on: executors (and the driver in tests). Arguments are plain values.
"""

from __future__ import annotations

import heapq
import logging
import os
import pickle
import re
from collections.abc import Iterator

import pandas as pd

from sparkdl_pipe.executor.reading import file_url
from sparkdl_pipe.executor.worker import prune_zip_importers, settle_heap
from sparkdl_pipe.records import label_from_rel_path, relative_to, root_prefix, zone_of

log = logging.getLogger(__name__)

#: Spark DDL of a unit handed to a listing task: ``kind`` (``files`` or ``tree``), the folder (a
#: local path or a URL) and real folders not to descend into (symlinked trees that hold the root).
UNIT_DDL = "kind string, dir string, exclude array<string>"

#: Spark DDL of what :func:`list_units` yields: the columns of
#: :data:`sparkdl_pipe.executor.ingest.KEYED_DDL` (null but ``path`` unless keyed, and for hidden
#: and link rows), ``entry`` (``record``, ``hidden`` or ``link``) and ``link_target`` (a link's real folder).
LISTED_DDL = ("path string, rel_path string, label_name string, split_hint string, u double, "
              "order_key long, reason string, message string, target double, entry string, link_target string")

LISTED_COLUMNS = [c.split()[0] for c in LISTED_DDL.split(", ")]
_ORDER_KEY, _U, _ENTRY = (LISTED_COLUMNS.index(c) for c in ("order_key", "u", "entry"))
_REASON, _LABEL, _HINT = (LISTED_COLUMNS.index(c) for c in ("reason", "label_name", "split_hint"))

#: Spark DDL of what a listing task yields (:func:`list_units`), a few rows per task however many
#: files it lists: ``entries`` (``n`` listed rows of one bucket, pickled tuples of :data:`LISTED_DDL`;
#: hidden rows in bucket -1, links in -2) and one ``count`` (pickled: ``counts``, the task's records
#: and hidden files counted by entry, reason, label, split hint and split zone, as tuples ending in the
#: count; ``first_hidden``, its first :data:`HIDDEN_EXAMPLES` hidden paths). The
#: payloads only travel between this package's own tasks and driver, within one job.
LISTING_DDL = "kind string, bucket int, n long, payload binary"
LISTING_COLUMNS = [c.split()[0] for c in LISTING_DDL.split(", ")]
#: A record's bucket: the top bits of its order key (a hash), so every bucket is a random share of every folder.
BUCKET_BITS = 12
BUCKETS = 1 << BUCKET_BITS
#: Hidden files named in a manifest or scoring summary (the first in path order); beyond this, the
#: full list is a table.
HIDDEN_EXAMPLES = 20
#: The buckets of hidden rows and of link rows (a record's bucket is never negative).
HIDDEN, LINKS = -1, -2
#: Hidden and link rows (and unkeyed records) per ``entries`` row.
ROWS_PER_BLOB = 1024
#: A task buckets what it has listed every this many rows (a task's memory does not grow with its folders).
ROWS_PER_FLUSH = 262_144
#: Characters ``urllib.parse.quote`` leaves alone: such a path's URL is ``file:`` + the path.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~/-]*")
ROWS_PER_BATCH = 8192


def is_hidden(rel: str) -> bool:
    """A path relative to the input root with a component starting with ``.`` or ``_``."""
    return any(c.startswith((".", "_")) for c in rel.split("/") if c)


def local_file_url(path: str) -> str:
    """:func:`~sparkdl_pipe.executor.reading.file_url`, without the quoting work for plain paths."""
    return "file:" + path if _URL_SAFE.fullmatch(path) else file_url(path)


def walk_local(kind: str, top: str, exclude: frozenset[str] = frozenset()) -> Iterator[tuple[str, str, str | None]]:
    """(``file`` or ``link``, local path, a link's real folder) of every entry of a local unit.

    ``files``: the non-directory entries of ``top``; ``tree``: of ``top`` and every real folder
    below it (a real folder tree has no cycles: symlinked folders are yielded, not entered).
    A folder that cannot be listed is skipped with a warning, as ``os.walk`` skips it.
    """
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError as err:
            log.warning("cannot list folder %s (%s): its files are not seen", d, err)
            continue
        with it:
            for e in it:
                try:
                    if e.is_symlink():
                        if e.is_dir():  # follows the link: a symlinked folder
                            yield "link", e.path, os.path.realpath(e.path)
                        else:  # a link to a file, or a broken link: a file to read (or reject)
                            yield "file", e.path, None
                    elif e.is_dir(follow_symlinks=False):
                        if kind == "tree" and not (exclude and os.path.realpath(e.path) in exclude):
                            stack.append(e.path)
                    else:
                        yield "file", e.path, None
                except OSError:  # vanished while listed: a file to read, which rejects it
                    yield "file", e.path, None


def walk_remote(kind: str, top_url: str) -> Iterator[tuple[str, str, str | None]]:
    """(``file``, URL, None) of every file of a unit on a remote store (pyarrow's filesystem)."""
    from pyarrow import fs as pafs

    from sparkdl_pipe import storage

    fs, p = storage.filesystem(top_url)
    scheme = storage.spark_path(top_url).split("://", 1)[0]
    for info in fs.get_file_info(pafs.FileSelector(p, recursive=kind == "tree", allow_not_found=True)):
        if info.type != pafs.FileType.Directory:
            yield "file", f"{scheme}://{info.path}", None


def bucket_of(order_key: int) -> int:
    """The bucket (0 .. :data:`BUCKETS` - 1) of a record's 63-bit order key."""
    return order_key >> (63 - BUCKET_BITS)


def listed_rows(units: pd.DataFrame, root: str, key: dict | None = None) -> Iterator[tuple]:
    """The entries of the ``units`` (a frame of :data:`UNIT_DDL`), as tuples of :data:`LISTED_DDL`
    (the driver walks a small folder with it; :func:`list_units` batches it in the tasks)."""
    from sparkdl_pipe import storage
    from sparkdl_pipe.executor.ingest import key_folder_file

    local = storage.is_local(root)
    root_path = root_prefix(root)
    allowed = set(key["allowed_labels"]) if key and key.get("allowed_labels") is not None else None
    empty = (None,) * 8
    folders: dict[str, tuple[bool, tuple[str | None, str | None]]] = {}  # folder -> (hidden, (label, hint))
    for kind, top, exclude in zip(units["kind"], units["dir"], units["exclude"], strict=True):
        ex = frozenset(exclude) if exclude is not None and len(exclude) else frozenset()
        entries = walk_local(kind, top, ex) if local else walk_remote(kind, top)
        for what, path, target in entries:
            if local:
                # the relative path of the URL's path, which is this path (file_url is reversible)
                rel = path[len(root_path):] if path.startswith(root_path) else path
                url = local_file_url(path)
            else:
                url = path
                rel = relative_to(url, root_path)
            if what == "link":
                yield (url, *empty, "link", target)
                continue
            # what a file's folder says (hidden or not, label, split hint) is worked out once per folder
            folder, _, name = rel.rpartition("/")
            known = folders.get(folder)
            if known is None:
                known = folders[folder] = (is_hidden(folder),
                                           label_from_rel_path(folder + "/x") if folder else (None, None))
            if known[0] or name.startswith((".", "_")):
                yield (url, *empty, "hidden", None)
            elif key is None:
                yield (url, *empty, "record", None)
            else:
                yield (*key_folder_file(url, rel, key["seed"], allowed, label_hint=known[1]), "record", None)


def listed_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of :data:`LISTED_DDL` as a pandas frame whose order keys stay exact: a column of 63-bit
    keys and nulls (hidden and link rows) would otherwise become float64, which keeps 53 bits."""
    df = pd.DataFrame(rows, columns=LISTED_COLUMNS)
    df["order_key"] = pd.array([r[_ORDER_KEY] for r in rows], dtype="Int64")
    return df


def _bucket_rows(rows: list[tuple], counts: dict[tuple, int], zones: tuple[float, float] | None,
                 first_hidden: list[str]) -> pd.DataFrame:
    """Rows of :data:`LISTING_DDL` for listed ``rows``: records grouped by bucket (:func:`bucket_of`;
    unkeyed ones in chunks), hidden rows in bucket :data:`HIDDEN`, links in :data:`LINKS`; ``counts``
    (records and hidden files) and ``first_hidden`` (the first hidden paths) updated in place."""
    groups: dict[int, list[tuple]] = {}
    for i, row in enumerate(rows):
        entry = row[_ENTRY]
        if entry == "record":
            key = row[_ORDER_KEY]
            bucket = bucket_of(key) if key is not None else (i // ROWS_PER_BLOB) % BUCKETS
            u = row[_U]
            band, below = zone_of(u, *zones) if zones is not None and u is not None else (None, None)
            what = (entry, row[_REASON], row[_LABEL], row[_HINT], band, below)
        elif entry == "link":  # not counted: the driver follows it or not
            groups.setdefault(LINKS, []).append(row)
            continue
        else:
            bucket, what = HIDDEN, (entry, None, None, None, None, None)
        counts[what] = counts.get(what, 0) + 1
        groups.setdefault(bucket, []).append(row)
    if HIDDEN in groups:
        first_hidden[:] = heapq.nsmallest(HIDDEN_EXAMPLES, first_hidden + [r[0] for r in groups[HIDDEN]])
    out: list[tuple] = []
    for bucket, members in groups.items():
        for k in range(0, len(members), ROWS_PER_BLOB if bucket < 0 else len(members)):
            part = members[k:k + ROWS_PER_BLOB] if bucket < 0 else members
            out.append(("entries", bucket, len(part), pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)))
    return pd.DataFrame(out, columns=LISTING_COLUMNS)


def list_units(batches: Iterator[pd.DataFrame], root: str, key: dict | None = None) -> Iterator[pd.DataFrame]:
    """Walk each unit (rows of :data:`UNIT_DDL`) and yield what was found as :data:`LISTING_DDL`: the
    task's entries grouped into buckets, then one ``count`` row.

    ``key``: ``{"seed": int, "allowed_labels": list | None}`` to key each record for ingest
    (:func:`~sparkdl_pipe.executor.ingest.key_folder_file`), with ``val_fraction``/``test_fraction``
    to count records by split zone; or None (scoring: paths only). A record's bucket comes from its
    order key, so the write job spreads every folder over every task by moving a few thousand
    buckets, not a row per file (Spark's per-row work in the JVM cost more than decoding a small image).
    """
    prune_zip_importers()
    settle_heap()
    zones = (key["val_fraction"], key["test_fraction"]) if key and "val_fraction" in key else None
    counts: dict[tuple, int] = {}
    first_hidden: list[str] = []
    for units in batches:
        buf: list[tuple] = []
        for row in listed_rows(units, root, key):
            buf.append(row)
            if len(buf) >= ROWS_PER_FLUSH:
                yield _bucket_rows(buf, counts, zones, first_hidden)
                buf = []
        if buf:
            yield _bucket_rows(buf, counts, zones, first_hidden)
    tallied = {"counts": [(*what, n) for what, n in counts.items()], "first_hidden": first_hidden}
    yield pd.DataFrame([("count", -1, len(counts), pickle.dumps(tallied, protocol=pickle.HIGHEST_PROTOCOL))],
                       columns=LISTING_COLUMNS)


def unpickle_entries(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Rows of :data:`LISTING_DDL` (``entries`` only) back to the listed rows, :data:`LISTED_DDL`."""
    prune_zip_importers()
    for pdf in batches:
        rows = [r for payload in pdf["payload"] for r in pickle.loads(payload)]
        for k in range(0, len(rows), ROWS_PER_BATCH):
            yield listed_frame(rows[k:k + ROWS_PER_BATCH])


#: Spark DDL of what :func:`write_paths` yields: ``file`` (a part file it wrote: name, rows),
#: ``count`` (rows seen) and ``example`` (one of the partition's first paths, in path order).
PATHS_SUMMARY_DDL = "kind string, n long, name string"


def write_paths(batches: Iterator[pd.DataFrame], staging: str, subdir: str, examples: int) -> Iterator[pd.DataFrame]:
    """Write the ``path`` column of a partition to ``<staging>/<subdir>`` as a Parquet part file;
    yield its count, its file and its ``examples`` first paths (:data:`PATHS_SUMMARY_DDL`)."""
    import heapq

    import pyarrow as pa

    from sparkdl_pipe.executor.parts import PartWriter

    prune_zip_importers()
    part = PartWriter(staging, subdir, pa.schema([("path", pa.string())]))
    first: list[str] = []
    n = 0
    for pdf in batches:
        paths = [str(p) for p in pdf["path"]]
        n += len(paths)
        part.write(pa.table({"path": pa.array(paths, pa.string())}, schema=part.schema))
        first = heapq.nsmallest(examples, first + paths)
    rows: list[tuple] = [("count", n, None)] + [("example", 0, p) for p in first]
    done = part.close()
    if done:
        rows.append(("file", done[1], done[0]))
    yield pd.DataFrame(rows, columns=["kind", "n", "name"])
