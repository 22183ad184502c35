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
import warnings
from collections.abc import Iterator

import pandas as pd

from sparkdl_pipe.executor.reading import file_url
from sparkdl_pipe.executor.worker import prune_zip_importers, settle_heap
from sparkdl_pipe.records import label_from_rel_path, relative_to, root_prefix, stable_hashes, zones

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
_ORDER_KEY = LISTED_COLUMNS.index("order_key")

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
_URL_SAFE_LINES = re.compile(r"[A-Za-z0-9_.~/\n-]*")
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


class _Folders:
    """What a folder (its path relative to the root) says of the files directly in it, worked out
    once per folder: (hidden, label, split hint, reason, message), the reason and message rejecting
    its files for their label (:func:`~sparkdl_pipe.executor.ingest.label_reason`), or None."""

    def __init__(self, allowed) -> None:
        self.allowed = set(allowed) if allowed is not None else None
        self.index: dict[str, int] = {}
        self.info: list[tuple] = []

    def of(self, folder: str) -> int:
        """The folder's index in :attr:`info`."""
        i = self.index.get(folder)
        if i is None:
            from sparkdl_pipe.executor.ingest import label_reason

            label, hint = label_from_rel_path(folder + "/x") if folder else (None, None)
            i = self.index[folder] = len(self.info)
            self.info.append((is_hidden(folder), label, hint, *label_reason(label, self.allowed)))
        return i


def _walk(units: pd.DataFrame, root: str) -> Iterator[tuple[str, str, str, str | None]]:
    """(``file`` or ``link``, local path or remote URL, path relative to the root, a link's real
    folder) of every entry of the ``units`` (a frame of :data:`UNIT_DDL`)."""
    from sparkdl_pipe import storage

    local = storage.is_local(root)
    root_path = root_prefix(root)
    for kind, top, exclude in zip(units["kind"], units["dir"], units["exclude"], strict=True):
        if local:
            ex = frozenset(exclude) if exclude is not None and len(exclude) else frozenset()
            for what, path, target in walk_local(kind, top, ex):
                # the relative path of the URL's path, which is this path (file_url is reversible)
                yield what, path, path[len(root_path):] if path.startswith(root_path) else path, target
        else:
            for what, url, target in walk_remote(kind, top):
                yield what, url, relative_to(url, root_path), target


def listed_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of :data:`LISTED_DDL` as a pandas frame whose order keys stay exact: a column of 63-bit
    keys and nulls (hidden and link rows) would otherwise become float64, which keeps 53 bits."""
    df = pd.DataFrame(rows, columns=LISTED_COLUMNS)
    df["order_key"] = pd.array([r[_ORDER_KEY] for r in rows], dtype="Int64")
    return df


class _TaskListing:
    """What one listing task has found, turned into :data:`LISTING_DDL` rows every
    :data:`ROWS_PER_FLUSH` entries (:meth:`flush`) and counted as it goes.

    A record travels as its path relative to the root and its two hashes (the write task makes
    its URL, label and reason again from them, :func:`entries_frame`): a bucket's payload is
    ``{"rel": [...], "url": [...] or None, "prefix": ..., "u": bytes, "order": bytes}`` (the hashes as
    little-endian float64 and int64), a third of the bytes of whole rows, hashed with numpy
    (:func:`~sparkdl_pipe.records.stable_hashes`).
    Hidden files and links are whole :data:`LISTED_DDL` rows in their own buckets."""

    def __init__(self, root: str, key: dict | None) -> None:
        from urllib.parse import quote

        from sparkdl_pipe import storage

        self.root = root
        self.local = storage.is_local(root)
        #: A local record's URL: this + its relative path (quoted where needed); see :func:`entries_frame`.
        self.prefix = "file:" + quote(root_prefix(root)) if self.local else None
        self.keyed = key is not None
        self.salt = f"{key['seed']}:" if key is not None else ""
        self.zones = (key["val_fraction"], key["test_fraction"]) if key and "val_fraction" in key else None
        self.folders = _Folders(key.get("allowed_labels") if key else None)
        self.counts: dict[tuple, int] = {}
        self.first_hidden: list[str] = []
        self.entries = 0
        self.over = False
        self._start()

    def _start(self) -> None:
        self.rels: list[str] = []
        self.urls: list[str] = []
        self.fids: list[int] = []
        self.digests: list[bytes] = []
        self.hidden: list[tuple] = []
        self.links: list[tuple] = []

    def add(self, units: pd.DataFrame, limit: int | None = None) -> Iterator[pd.DataFrame]:
        """List the units, yielding a flush every :data:`ROWS_PER_FLUSH` entries; stop (and set
        :attr:`over`) at the first entry beyond ``limit`` entries in all."""
        import hashlib

        sha1, salt, keyed, local = hashlib.sha1, self.salt, self.keyed, self.local
        url_of = local_file_url if local else str
        of, info = self.folders.of, self.folders.info
        rels, urls, fids, digests = self.rels, self.urls, self.fids, self.digests
        empty = (None,) * 8
        seen = 0
        for what, path, rel, target in _walk(units, self.root):
            self.entries += 1
            if limit is not None and self.entries > limit:
                self.over = True
                return
            if what == "link":
                self.links.append((url_of(path), *empty, "link", target))
                continue
            folder, _, name = rel.rpartition("/")
            fid = of(folder)
            if info[fid][0] or name.startswith((".", "_")):
                self.hidden.append((url_of(path), *empty, "hidden", None))
            else:
                rels.append(rel)
                fids.append(fid)
                if not local:
                    urls.append(path)
                if keyed:
                    digests.append(sha1((salt + rel).encode()).digest())
            seen += 1
            if seen >= ROWS_PER_FLUSH:
                yield self.flush()
                rels, urls, fids, digests = self.rels, self.urls, self.fids, self.digests
                seen = 0

    def flush(self) -> pd.DataFrame:
        """The :data:`LISTING_DDL` rows of what was listed since the last flush; counts updated."""
        import numpy as np

        out: list[tuple] = []
        n = len(self.rels)
        if n:
            fid = np.asarray(self.fids, dtype=np.int64)
            if self.keyed:
                u, order = stable_hashes(self.digests)
                bucket = order >> (63 - BUCKET_BITS)
            else:
                u = order = None
                bucket = (np.arange(n) // ROWS_PER_BLOB) % BUCKETS
            self._count(fid, u)
            idx = np.argsort(bucket, kind="stable")
            for sel in np.split(idx, np.flatnonzero(np.diff(bucket[idx])) + 1):
                ids = sel.tolist()
                blob = {"rel": [self.rels[i] for i in ids], "url": [self.urls[i] for i in ids] if not self.local else None,
                        "prefix": self.prefix, "u": u[sel].astype("<f8").tobytes() if u is not None else None,
                        "order": order[sel].astype("<i8").tobytes() if order is not None else None}
                out.append(("entries", int(bucket[sel[0]]), len(ids), pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL)))
        if self.hidden:
            what = ("hidden", None, None, None, None, None)
            self.counts[what] = self.counts.get(what, 0) + len(self.hidden)
            self.first_hidden = heapq.nsmallest(HIDDEN_EXAMPLES, self.first_hidden + [r[0] for r in self.hidden])
        for bucket_id, rows in ((HIDDEN, self.hidden), (LINKS, self.links)):
            for k in range(0, len(rows), ROWS_PER_BLOB):
                part = rows[k:k + ROWS_PER_BLOB]
                out.append(("entries", bucket_id, len(part), pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)))
        self._start()
        return pd.DataFrame(out, columns=LISTING_COLUMNS)

    def _count(self, fid, u) -> None:
        """Count records by (reason, label, split hint) of their folder and (band, below_val) of their hash."""
        import numpy as np

        info = self.folders.info
        if not self.keyed:
            what = ("record", None, None, None, None, None)
            self.counts[what] = self.counts.get(what, 0) + len(fid)
            return
        if self.zones is not None:
            band, below = zones(u, *self.zones)
            code = fid * 6 + band * 2 + below
        else:
            code = fid * 6
        values, n = np.unique(code, return_counts=True)
        for c, k in zip(values.tolist(), n.tolist(), strict=True):
            f, z = divmod(c, 6)
            _, label, hint, reason, _ = info[f]
            zone = (z // 2, bool(z % 2)) if self.zones is not None else (None, None)
            what = ("record", reason, label, hint, *zone)
            self.counts[what] = self.counts.get(what, 0) + k


def list_units(batches: Iterator[pd.DataFrame], root: str, key: dict | None = None) -> Iterator[pd.DataFrame]:
    """Walk each unit (rows of :data:`UNIT_DDL`) and yield what was found as :data:`LISTING_DDL`: the
    task's entries grouped into buckets, then one ``count`` row.

    ``key``: ``{"seed": int, "allowed_labels": list | None}`` to key each record for ingest (its
    hashes, :func:`~sparkdl_pipe.records.stable_hash`, label and reason, as
    :func:`~sparkdl_pipe.executor.ingest.key_folder_file` keys it), with ``val_fraction``/``test_fraction``
    to count records by split zone; or None (scoring: paths only). A record's bucket comes from its
    order key, so the write job spreads every folder over every task by moving a few thousand
    buckets, not a row per file (Spark's per-row work in the JVM cost more than decoding a small image).
    """
    prune_zip_importers()
    settle_heap()
    task = _TaskListing(root, key)
    for units in batches:
        yield from task.add(units)
        if task.rels or task.hidden or task.links:
            yield task.flush()
    tallied = {"counts": [(*what, n) for what, n in task.counts.items()], "first_hidden": task.first_hidden}
    yield pd.DataFrame([("count", -1, len(task.counts), pickle.dumps(tallied, protocol=pickle.HIGHEST_PROTOCOL))],
                       columns=LISTING_COLUMNS)


def walk_frame(units: pd.DataFrame, root: str, key: dict | None = None, limit: int | None = None) -> pd.DataFrame | None:
    """The listed rows (:data:`LISTED_DDL`) of the ``units`` walked in this process (the driver walks a
    small folder with it), by the listing tasks' own functions; None beyond ``limit`` entries."""
    task = _TaskListing(root, key)
    payloads = [p for part in task.add(units, limit) for p in part["payload"]]
    if task.over:
        return None
    payloads += list(task.flush()["payload"])
    return entries_frame(payloads, key.get("allowed_labels") if key else None)


def entries_frame(payloads, allowed_labels=None) -> pd.DataFrame:
    """The listed rows (:data:`LISTED_DDL`) of ``entries`` payloads (:data:`LISTING_DDL`).

    A record's URL, label, split hint and reason are made again from its relative path as the
    listing made them (``allowed_labels``: the listing key's); its hashes travelled with it.
    """
    blobs = [pickle.loads(p) for p in payloads]
    frames = []
    rows = [r for b in blobs if isinstance(b, list) for r in b]  # hidden files and links: whole rows
    if rows:
        frames.append(listed_frame(rows))
    recs = [b for b in blobs if isinstance(b, dict) and b["rel"]]
    if recs:
        rels = [r for b in recs for r in b["rel"]]
        n = len(rels)
        if recs[0]["url"] is not None:
            urls = [x for b in recs for x in b["url"]]
        else:  # a local path's URL (local_file_url): quote(root + rel) is quote(root) + quote(rel)
            joined = "\n" + "\n".join(rels)
            pre = recs[0]["prefix"]
            if _URL_SAFE_LINES.fullmatch(joined) and "\n/" not in joined:  # all plain and inside the root
                urls = [pre + r for r in rels]
            else:
                from urllib.parse import quote

                safe = _URL_SAFE.fullmatch
                urls = [("file:" if r[0] == "/" else pre) + (r if safe(r) else quote(r)) for r in rels]
        cols: dict = {"path": urls}
        if recs[0]["u"] is not None:
            import numpy as np

            # what each record's folder says, worked out once per folder
            codes, uniques = pd.factorize(pd.Series([r.rpartition("/")[0] for r in rels], dtype=object))
            folders = _Folders(allowed_labels)
            info = [folders.info[folders.of(f)] for f in uniques]
            _, label, hint, reason, message = (np.array(c, dtype=object)[codes] for c in zip(*info, strict=True))
            cols.update(rel_path=rels, label_name=label, split_hint=hint,
                        u=np.frombuffer(b"".join(b["u"] for b in recs), dtype="<f8"),
                        order_key=pd.array(np.frombuffer(b"".join(b["order"] for b in recs), dtype="<i8"),
                                           dtype="Int64"),
                        reason=reason, message=message)
        none = [None] * n
        frame = pd.DataFrame({c: cols.get(c, none) for c in LISTED_COLUMNS[:-2]})
        frame["entry"] = "record"
        frame["link_target"] = none
        if "order_key" not in cols:
            frame["order_key"] = pd.array(none, dtype="Int64")
        frames.append(frame)
    if len(frames) < 2:
        return frames[0] if frames else listed_frame([])
    with warnings.catch_warnings():  # the hidden rows' columns are all null: the records' dtypes win
        warnings.simplefilter("ignore", FutureWarning)
        return pd.concat(frames, ignore_index=True)


def unpickle_entries(batches: Iterator[pd.DataFrame], allowed_labels=None) -> Iterator[pd.DataFrame]:
    """Rows of :data:`LISTING_DDL` (``entries`` only) back to the listed rows, :data:`LISTED_DDL`
    (:func:`entries_frame`; ``allowed_labels``: the listing key's)."""
    prune_zip_importers()
    for pdf in batches:
        frame = entries_frame(pdf["payload"], allowed_labels)
        for k in range(0, len(frame), ROWS_PER_BATCH):
            yield frame.iloc[k:k + ROWS_PER_BATCH]


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
