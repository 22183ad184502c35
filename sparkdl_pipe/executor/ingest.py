"""Ingest batch functions, run by ``mapInPandas`` in the executors: a pandas batch at a time.

Written once for every kind of data; what differs is the :class:`~sparkdl_pipe.modalities.base.Modality`
the tasks resolve from its ``module:attribute`` reference.

- :func:`key_records`: the split key, label and split hint of each record (no bytes read yet);
- :func:`prepare_records`: a fitted modality's first pass (read, prepare; one row per record);
- :func:`write_records`: read, prepare, encode (or encode what was prepared) and write each split's
  Parquet part files and the rejects, returning only summary rows.

Runs on: executors. Arguments are plain values or a Spark broadcast (what the modality fitted).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from sparkdl_pipe.executor.parts import PartWriter
from sparkdl_pipe.executor.reading import read_bytes
from sparkdl_pipe.executor.worker import prune_zip_importers, settle_heap
from sparkdl_pipe.records import (
    clean_label,
    content_id,
    label_from_rel_path,
    relative_to,
    root_prefix,
    split_hint,
    stable_hash,
)
from sparkdl_pipe.rejects import (
    MISSING_FILE,
    MISSING_TARGET,
    NO_LABEL,
    UNKNOWN_LABEL,
    count_by_reason,
    malformed_reason,
)
from sparkdl_pipe.tasks.regression import parse_target

#: Spark DDL of what :func:`key_records` yields (plus ``content`` when its input has the bytes).
KEYED_DDL = ("path string, rel_path string, label_name string, split_hint string, u double, "
             "order_key long, reason string, message string, target double")

#: Spark DDL of what :func:`write_records` yields: a few summary rows per task, never the records.
#: ``kind`` is ``file`` (a Parquet file the task wrote: split, name, n rows), ``class`` (split,
#: label_name, n accepted), ``reject`` (reason, n, one example path) or ``stat`` (split, the stat's
#: name, its sum over the task's accepted records).
SUMMARY_DDL = "kind string, split string, label_name string, reason string, n long, name string"


def key_record(path, label, hint, seed: int, root_path: str | None, from_table: bool,
               allowed: set[str] | None, content=None, malformed=None, need_label: bool = True,
               target_mode: bool = False) -> tuple:
    """(record key, rel_path, label, split hint, u, order_key, reason, message, target) of one input record.

    Folder input (``from_table`` false): label and hint come from ``path`` relative to
    ``root_path`` (:func:`~sparkdl_pipe.records.label_from_rel_path`). Table input: from the given
    ``label``/``hint`` cells, and the split key is the path or id (a table row with no id is keyed
    by a hash of its content). A record the reader could not parse, with no label (when
    ``need_label``), or with a label not in ``allowed`` is rejected here: it is never read.
    ``target_mode`` (``--target-col``): the label cell is a numeric target instead (label None);
    a missing or non-numeric one is rejected here (``missing_target``, ``invalid_target``).
    """
    if not from_table:
        return key_folder_file(path, relative_to(path, root_path), seed, allowed, need_label)
    if not (isinstance(path, str) and path != ""):
        path = content_id(content if content is not None else malformed)
    rel = path
    label, hint = clean_label(label), split_hint(hint)
    u, order = stable_hash(seed, rel)
    reason = message = target = None
    if target_mode:
        cell, label, need_label = label, None, False
        target, why = parse_target(cell)
        if why is not None and malformed is None:
            reason = why
            message = "no target (null or empty cell)" if why == MISSING_TARGET else \
                f"target {cell!r} is not a finite number"[:300]
    if reason is not None:
        pass
    elif malformed is not None:
        reason, message = malformed_reason(malformed)
    else:
        reason, message = label_reason(label, allowed, need_label)
    return path, rel, label, hint, u, order, reason, message, target


def key_folder_file(path: str, rel: str, seed: int, allowed: set[str] | None, need_label: bool = True) -> tuple:
    """:func:`key_record` of a file of a folder input: ``rel`` is its path relative to the root, which
    gives its label and split hint (:func:`~sparkdl_pipe.records.label_from_rel_path`)."""
    label, hint = label_from_rel_path(rel)
    u, order = stable_hash(seed, rel)
    reason, message = label_reason(label, allowed, need_label)
    return path, rel, label, hint, u, order, reason, message, None  # a folder gives no numeric target


def label_reason(label: str | None, allowed: set[str] | None, need_label: bool = True) -> tuple[str | None, str | None]:
    """(reason, message) rejecting a record for its label (``missing_label`` when ``need_label``
    and there is none; ``unknown_label`` when it is not in ``allowed``), or (None, None)."""
    if need_label and label is None:
        return NO_LABEL, "no label: put the file in a <label>/ folder or give a label column"
    if allowed is not None and label is not None and label not in allowed:
        return UNKNOWN_LABEL, f"label {label!r} is not one of --labels {sorted(allowed)}"[:300]
    return None, None


def key_records(batches: Iterator[pd.DataFrame], seed: int, root: str | None, from_manifest: bool,
                allowed_labels: list[str] | None = None, target_mode: bool = False,
                need_label: bool = True) -> Iterator[pd.DataFrame]:
    """:func:`key_record` for every row (``path`` [, ``label_name``, ``split_hint``, ``content``,
    ``malformed``]). Rows of :data:`KEYED_DDL`, with ``content`` passed through when the input has it.
    ``need_label`` False: records of an unlabeled input (no label column) are not ``missing_label`` rejects.
    """
    prune_zip_importers()
    root_path = root_prefix(root) if root else None
    allowed = set(allowed_labels) if allowed_labels is not None else None
    names = ["path", "rel_path", "label_name", "split_hint", "u", "order_key", "reason", "message", "target"]
    for pdf in batches:
        n = len(pdf)

        def col(name: str):
            return pdf[name] if name in pdf.columns else [None] * n  # noqa: B023

        keyed = [key_record(p, lab, h, seed, root_path, from_manifest, allowed, c, bad, need_label=need_label,
                            target_mode=target_mode)
                 for p, lab, h, c, bad in zip(pdf["path"], col("label_name"), col("split_hint"), col("content"),
                                              col("malformed"), strict=True)]
        out = pd.DataFrame(keyed, columns=names) if keyed else pd.DataFrame({k: [] for k in names})
        if "content" in pdf.columns:
            out["content"] = pdf["content"].to_numpy()
        yield out


def split_and_label(frame: pd.DataFrame, val_fraction: float, test_fraction: float, hints: set[str],
                    labels: list[str], missing_label: int) -> pd.DataFrame:
    """Keyed records (:data:`KEYED_DDL` columns of ``frame``) with their final ``split``
    (:func:`~sparkdl_pipe.records.split_of`, from the input's split ``hints`` and each hash's zone)
    and ``label`` (the index of ``label_name`` in ``labels``; ``missing_label`` when there are no
    classes); both null for a rejected record. The driver's walk and the write tasks both call it."""
    from sparkdl_pipe.records import split_of, zones

    band, below = zones(frame["u"].to_numpy(dtype=float, na_value=np.nan), val_fraction, test_fraction)
    # every (hint, band, below_val) case's split, looked up by a code per record
    cases = (None, "train", "val", "test")
    rule = np.array([split_of(h, b, v, hints) for h in cases for b in range(3) for v in (False, True)], dtype=object)
    hint = pd.Categorical(frame["split_hint"], categories=cases[1:]).codes.astype(np.int64) + 1  # no hint: 0
    split = rule[hint * 6 + band * 2 + below]
    rejected = frame["reason"].notna().to_numpy()
    split[rejected] = None
    if labels:
        label = frame["label_name"].map({name: i for i, name in enumerate(labels)}).to_numpy(dtype=float)
    else:
        label = np.full(len(frame), float(missing_label))
    label[rejected] = np.nan
    return frame[[c.split()[0] for c in KEYED_DDL.split(", ")]].assign(
        split=split, label=pd.array(label, dtype="Int32"))


def key_buckets(batches: Iterator[pd.DataFrame], rule: dict) -> Iterator[pd.DataFrame]:
    """A write task's buckets of listed records (``entries`` rows of
    :data:`~sparkdl_pipe.executor.listing.LISTING_DDL`) as keyed records (:func:`split_and_label`),
    all sorted by (split, order key), so each file the task writes holds its split in a shuffled
    order. Yields :data:`KEYED_DDL` plus ``split`` and ``label``, in batches.

    ``rule``: ``labels``, ``hints``, ``val_fraction``, ``test_fraction``, ``missing_label`` (see
    :func:`split_and_label`), ``unlabeled`` (no label folder at all: the ``missing_label``
    rejects are records) and ``allowed_labels`` (the listing key's).
    """
    from sparkdl_pipe.executor.listing import ROWS_PER_BATCH, entries_frame

    prune_zip_importers()
    frame = entries_frame([payload for pdf in batches for payload in pdf["payload"]], rule.get("allowed_labels"))
    if rule["unlabeled"]:
        frame.loc[frame["reason"] == NO_LABEL, ["reason", "message"]] = None
    keyed = split_and_label(frame, rule["val_fraction"], rule["test_fraction"], set(rule["hints"]), rule["labels"],
                            rule["missing_label"])
    # nulls (rejects) first, as Spark sorts them
    keyed = keyed.sort_values(["split", "order_key"], na_position="first", kind="stable", ignore_index=True)
    for k in range(0, len(keyed), ROWS_PER_BATCH):
        yield keyed.iloc[k:k + ROWS_PER_BATCH]


def write_buckets(batches: Iterator[pd.DataFrame], rule: dict, **write_args) -> Iterator[pd.DataFrame]:
    """:func:`write_records` of a write task's buckets, keyed there (:func:`key_buckets`)."""
    yield from write_records(key_buckets(batches, rule), **write_args)


def _fixed_binary(arrays: list[np.ndarray], dtype: str):
    """Equal-sized arrays as one Arrow binary array of their raw bytes, built with numpy (no per-row objects)."""
    import pyarrow as pa

    flat = np.ascontiguousarray(np.stack(arrays), dtype=dtype).reshape(len(arrays), -1).view(np.uint8)
    width = flat.shape[1]
    offsets = np.arange(0, (len(arrays) + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), len(arrays), [None, pa.py_buffer(offsets), pa.py_buffer(flat)])


def split_arrow_schema(modality, task=None):
    """The Arrow schema of a split's Parquet files: feature, the task's label fields (classification:
    label, label_name; regression: target), record key."""
    import pyarrow as pa

    from sparkdl_pipe.tasks import CLASSIFICATION

    labels = (task or CLASSIFICATION).label_arrow_fields()
    return pa.schema([(modality.feature, pa.binary()), *labels, (modality.key, pa.string())])


class _SplitFile:
    """One task's part file of one split: records buffered and written ``rows_per_group`` at a time."""

    def __init__(self, staging: str, split: str, rows_per_group: int, modality, task=None) -> None:
        schema = split_arrow_schema(modality, task)
        self.label_fields = [f.name for f in schema][1:-1]
        dictionary = [n for n in ("label", "label_name") if n in self.label_fields]
        self.part = PartWriter(staging, split, schema, use_dictionary=dictionary, write_statistics=self.label_fields)
        self.dtype = modality.dtype
        self.rows_per_group = rows_per_group
        self.buf: tuple[list, ...] = tuple([] for _ in range(len(self.label_fields) + 2))

    def add(self, feature: np.ndarray, labels: tuple, key: str) -> None:
        for col, v in zip(self.buf, (feature, *labels, key), strict=True):
            col.append(v)
        if len(self.buf[0]) >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        features, *labels, keys = self.buf
        if features:
            schema = self.part.schema
            self.part.write(pa.table([_fixed_binary(features, self.dtype),
                                      *[pa.array(v, schema.field(n).type) for n, v in zip(self.label_fields, labels,
                                                                                        strict=True)],
                                      pa.array(keys, pa.string())], schema=schema))
        self.buf = tuple([] for _ in self.buf)

    def close(self) -> tuple[str, int] | None:
        self.flush()
        return self.part.close()


def read_and_prepare(modality, spec, path, data, has_content: bool, decoded_by_reader: bool, read=None):
    """(prepared value, reason, message, stats) of one keyed record: its bytes read here unless given
    (``data``, or ``read``: what :func:`read_bytes` already returned for ``path``)."""
    if not has_content:
        if not isinstance(path, str):
            return None, MISSING_FILE, "no path (null)", None
        data, reason, message = read if read is not None else read_bytes(path)
        if reason is not None:
            return None, reason, message, None
    got = modality.prepare(data, spec, decoded_by_reader)
    return got.value, got.reason, got.message, got.stats


#: File bytes a write task reads ahead of its rows to read them in path order (:func:`prepared_by_path`).
READ_AHEAD_BYTES = 32 << 20
#: Rows of the first read-ahead window, before the files' sizes are known.
FIRST_WINDOW = 64


def prepared_by_path(modality, spec, paths: list, reasons: list, decoded_by_reader: bool) -> Iterator[tuple | None]:
    """:func:`read_and_prepare` of each row (by its path) not rejected yet, None for the others,
    yielded in row order.

    A task's rows come in a shuffled order (by order key); reading the files of a folder one after
    another costs less (kernel path lookups, page cache) than jumping between folders. So the files
    of each window of rows are read in path order first, as bytes, and each is decoded when its row
    is reached (a decoded value is not held: benchmarks/NOTES.md change 39). A window holds about
    :data:`READ_AHEAD_BYTES` of file bytes: its size follows the mean size of the files read so far,
    and a window whose files turn out bigger stops reading ahead at the budget (the rest of its
    rows are read when reached)."""
    n, start, window = len(paths), 0, FIRST_WINDOW
    files = size = 0
    while start < n:
        rows = range(start, min(start + window, n))
        ahead: dict[int, tuple] = {}
        held = 0
        for i in sorted((i for i in rows if reasons[i] is None and isinstance(paths[i], str)), key=paths.__getitem__):
            got = ahead[i] = read_bytes(paths[i])
            if got[0] is not None:
                held += len(got[0])
                files += 1
                if held >= READ_AHEAD_BYTES:
                    break
        for i in rows:  # a row not read ahead (over the budget) is read here
            yield None if reasons[i] is not None else read_and_prepare(
                modality, spec, paths[i], None, False, decoded_by_reader, ahead.pop(i, None))
        size += held
        window = max(1, min(n, READ_AHEAD_BYTES * files // max(1, size)))
        start = rows.stop


def prepared_ddl(modality) -> str:
    """Spark DDL of what :func:`prepare_records` yields for ``modality``."""
    stats = "".join(f", stat_{s} long" for s in modality.stat_names)
    return f"{KEYED_DDL}, split string, label int, {modality.prepared_ddl}{stats}"


def prepare_records(batches: Iterator[pd.DataFrame], modality_ref: str, spec_dict: dict,
                    decoded_by_reader: bool = False) -> Iterator[pd.DataFrame]:
    """A fitted modality's first pass: read and prepare every keyed record (split and label
    assigned), one output row per input row (:func:`prepared_ddl`); rejects keep their reason."""
    from sparkdl_pipe.modalities import resolve

    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    modality = resolve(modality_ref)
    spec = modality.spec_type.from_dict(spec_dict)
    keep = ["path", "rel_path", "label_name", "split_hint", "u", "order_key", "reason", "message", "target", "split",
            "label"]
    value_cols = [c.split()[0] for c in modality.prepared_ddl.split(",")]
    for pdf in batches:
        has_content = "content" in pdf.columns
        contents = pdf["content"] if has_content else [None] * len(pdf)
        out = {k: list(pdf[k]) for k in keep}
        values: dict[str, list] = {c: [] for c in value_cols}
        stats: dict[str, list] = {s: [] for s in modality.stat_names}
        for i, (path, data) in enumerate(zip(pdf["path"], contents, strict=True)):
            value = got_stats = None
            if out["reason"][i] is None:
                value, out["reason"][i], out["message"][i], got_stats = read_and_prepare(
                    modality, spec, path, data, has_content, decoded_by_reader)
            row = modality.prepared_row(value) if out["reason"][i] is None else {}
            for c in value_cols:
                values[c].append(row.get(c))
            for s in modality.stat_names:
                stats[s].append(int((got_stats or {}).get(s, 0)))
        frame = pd.DataFrame({**out, **values, **{f"stat_{s}": v for s, v in stats.items()}})
        frame["label"] = frame["label"].astype("Int32")
        yield frame


def write_records(batches: Iterator[pd.DataFrame], modality_ref: str, spec_dict: dict, staging: str,
                  rows_per_group: dict[str, int], artifacts=None, from_prepared: bool = False,
                  decoded_by_reader: bool = False, task_name: str = "classification") -> Iterator[pd.DataFrame]:
    """Prepare + encode a partition of keyed records and write them, in order, as Parquet files.

    Input rows: :data:`KEYED_DDL` plus ``split`` and ``label`` (null for records already rejected)
    and optionally ``content`` (the bytes; else they are read here by path, failures becoming
    reasons); with ``from_prepared``, the rows of :func:`prepare_records` instead. Accepted records
    go to ``<staging>/<split>/part-<task>-<attempt>.parquet`` in row groups of
    ``rows_per_group[split]`` rows; rejected ones to ``<staging>/rejects/...``. Only summary rows
    (:data:`SUMMARY_DDL`) go back to Spark: the driver keeps the files its successful tasks name
    and checks their footers. Every input row is one accepted or one rejected record.
    ``artifacts``: what the modality fitted (a Spark broadcast, or None).
    """
    import pyarrow as pa

    from sparkdl_pipe import tasks
    from sparkdl_pipe.modalities import resolve
    from sparkdl_pipe.rejects import arrow_schema

    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    modality = resolve(modality_ref)
    task = tasks.get(task_name)
    settle_heap()
    spec = modality.spec_type.from_dict(spec_dict)
    fitted = artifacts.value if artifacts is not None and hasattr(artifacts, "value") else artifacts
    files: dict[str, _SplitFile] = {}
    per_class: dict[tuple[str, str], int] = {}
    sums: dict[tuple[str, str], int] = {}
    rejects: tuple[list, list, list] = ([], [], [])
    stat_cols = [f"stat_{s}" for s in modality.stat_names]
    for pdf in batches:
        has_content = "content" in pdf.columns
        contents = pdf["content"] if has_content else [None] * len(pdf)
        records = pdf.to_dict("records") if from_prepared else None
        targets = pdf["target"] if "target" in pdf.columns else [None] * len(pdf)
        by_path = None if has_content or from_prepared else prepared_by_path(
            modality, spec, pdf["path"].tolist(), pdf["reason"].tolist(), decoded_by_reader)
        for i, (path, split, label, name, reason, message, data, target) in enumerate(zip(
                pdf["path"], pdf["split"], pdf["label"], pdf["label_name"], pdf["reason"], pdf["message"],
                contents, targets, strict=True)):
            feature = stats = None
            got = next(by_path) if by_path is not None else None  # (value, reason, message, stats) or None
            if reason is None:
                if from_prepared:
                    row = records[i]  # type: ignore[index]
                    value = modality.from_prepared_row(row)
                    stats = modality.fitted_stats(value, {c[5:]: row[c] for c in stat_cols}, spec)
                else:
                    value, reason, message, stats = got if got is not None else read_and_prepare(
                        modality, spec, path, data, has_content, decoded_by_reader)
                if reason is None:
                    feature = modality.encode(value, spec, fitted)
            if reason is not None or feature is None:
                for col, v in zip(rejects, (path, reason, message), strict=True):
                    col.append(v)
                continue
            if split not in files:
                files[split] = _SplitFile(staging, split, rows_per_group[split], modality, task)
            files[split].add(feature, task.stored_labels(label, name, target), path)
            per_class[(split, name)] = per_class.get((split, name), 0) + 1
            for s, v in (stats or {}).items():
                sums[(split, s)] = sums.get((split, s), 0) + int(v)
    summary: list[tuple] = []
    for s, f in files.items():
        done = f.close()
        if done:
            summary.append(("file", s, None, None, done[1], done[0]))
    summary += [("class", s, name, None, n, None) for (s, name), n in per_class.items()]
    summary += [("stat", s, None, None, n, stat) for (s, stat), n in sums.items()]
    if rejects[0]:
        part = PartWriter(staging, "rejects", arrow_schema(modality.key))
        part.write(pa.table([pa.array(c, pa.string()) for c in (*rejects, ["ingest"] * len(rejects[0]))],
                            schema=part.schema))
        done = part.close()
        if done:
            summary.append(("file", "rejects", None, None, done[1], done[0]))
        first: dict[str, str] = {}
        for path, reason in zip(rejects[0], rejects[1], strict=True):
            first.setdefault(reason, path)
        summary += [("reject", None, None, r, n, first[r]) for r, n in count_by_reason(rejects[1]).items()]
    yield pd.DataFrame(summary, columns=["kind", "split", "label_name", "reason", "n", "name"])
