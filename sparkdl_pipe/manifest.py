"""Dataset manifests: the JSON written beside every dataset, and reading/validating it.

Runs on: driver (and executors, read-only, via plain dicts).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sparkdl_pipe import storage
from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.preprocess.spec import spec_from_dict

FORMAT = "sparkdl_pipe.dataset"
FORMAT_VERSION = 1
_VOLATILE = ("created_at", "versions", "fingerprint", "seconds")


def natural_sorted(names) -> list[str]:
    """Label order: numeric names by value ('2' before '10'), then the rest alphabetically."""
    return sorted(set(names), key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))


def fingerprint(doc: dict) -> str:
    """Content hash of a manifest (timestamps and versions excluded)."""
    stable = {k: v for k, v in doc.items() if k not in _VOLATILE}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the data (recorded in manifests and model cards)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("sparkdl-pipe", "pyspark", "petastorm", "pyarrow", "numpy", "pillow", "tensorflow",
                "tf-keras", "horovod"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class DatasetInfo:
    """A loaded dataset manifest with the bits the trainer and scorer need."""

    url: str
    doc: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return list(self.doc["labels"])

    @property
    def spec(self) -> Any:
        return spec_from_dict(self.doc["preprocess"])

    @property
    def kind(self) -> str:
        """'image' or 'text' (manifests written before text datasets existed are image datasets)."""
        return str(self.doc.get("kind", "image"))

    @property
    def task(self) -> str:
        """What the dataset's labels are for (manifests written before tasks existed: classification)."""
        return str(self.doc.get("task", "classification"))

    @property
    def fingerprint(self) -> str:
        return str(self.doc["fingerprint"])

    def count(self, split: str) -> int:
        return int(self.doc["splits"].get(split, {}).get("count", 0))

    def split_url(self, split: str) -> str:
        return storage.join(self.url, split)

    def row_groups(self, split: str) -> int:
        return int(self.doc["splits"].get(split, {}).get("row_groups", 0))


def load_dataset_info(url: str) -> DatasetInfo:
    """Read and check a dataset's manifest; a clear error when it is not a sparkdl_pipe dataset."""
    u, doc = storage.read_metadata(url, storage.MANIFEST_FILE, "dataset", "sparkdl-pipe ingest-images")
    if doc.get("format") != FORMAT or int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise DatasetError("dataset manifest format", f"{FORMAT} v<={FORMAT_VERSION}",
                           f"{doc.get('format')} v{doc.get('format_version')}")
    for split in storage.SPLITS:
        refuse_pickled_schema(storage.join(u, split))
    return DatasetInfo(u, doc)


#: The key under which Petastorm's ``materialize_dataset`` stores a pickled Unischema.
PICKLED_SCHEMA_KEY = b"dataset-toolkit.unischema.v1"


def refuse_pickled_schema(split_url: str) -> None:
    """Refuse a split whose ``_common_metadata`` holds a pickle: Petastorm's readers would unpickle it.

    Reading the Parquet key-value metadata does not unpickle anything. Runs on: driver and executors.
    """
    import pyarrow.parquet as pq

    for name in ("_common_metadata", "_metadata"):
        meta = storage.join(split_url, name)
        if not storage.exists(meta):
            continue
        if storage.is_local(meta):
            kv = pq.read_metadata(storage.local_path(meta)).metadata or {}
        else:
            fs, p = storage.filesystem(meta)
            with fs.open_input_file(p) as f:
                kv = pq.read_metadata(f).metadata or {}
        if PICKLED_SCHEMA_KEY not in kv:
            continue
        raise DatasetError(f"{split_url} carries a pickled Petastorm schema in {name}, which reading it "
                           "would unpickle (arbitrary code)", fix="Re-ingest it with this version of "
                           "sparkdl_pipe (which writes no pickles); delete that file only if you trust its source")
