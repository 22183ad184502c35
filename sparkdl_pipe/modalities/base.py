"""The seam between the pipelines and a kind of data (images, text, ...): :class:`Modality`.

Ingest, training and scoring are written once (``driver/`` and ``executor/``); what differs
between kinds of data is one object of this interface, registered by name in
:mod:`sparkdl_pipe.modalities`. A modality says:

- what its spec is (``spec_type``: frozen, with ``shape``, ``fingerprint()``, ``to_dict()``/``from_dict()``);
- how a record's raw bytes become a model input, the SAME pure call at ingest and at scoring
  (:meth:`prepare`, then :meth:`encode` with what :meth:`fit` learnt on the train split);
- what it stores (``feature``, the column; ``dtype``, its element type; ``key``, the record id column);
- what a table row holds for it (``table_reads``: a path to read, or the content itself);
- what its model builders need beyond the input shape (:meth:`model_extras`).

A modality that needs nothing fitted (images) is prepared, encoded and written in one pass over the
records; one that does (text: the vocabulary) is prepared in a first pass, fitted on the driver,
then encoded and written. Driver-side methods import pyspark inside themselves.

Runs on: driver and executors (the object is sent to tasks by reference: ``module:attribute``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Prepared:
    """One record after :meth:`Modality.prepare`: a ``value`` or a reject ``reason`` + ``message``.

    ``stats``: per-record counts the manifest sums per split (``truncated``: 1, ``tokens``: 212).
    """

    value: Any = None
    reason: str | None = None
    message: str | None = None
    stats: dict[str, int] = field(default_factory=dict)


class Modality:
    """A kind of data. Subclass it, set the class attributes, implement :meth:`prepare` (and the
    fit hooks if ``needs_fit``), and register an instance with
    :func:`sparkdl_pipe.modalities.register`."""

    #: Stored in manifests and model cards; the registry key.
    kind: ClassVar[str]
    #: The frozen spec class (``shape``, ``fingerprint()``, ``to_dict()``, ``from_dict()``).
    spec_type: ClassVar[Any]
    #: Stored feature column, its element dtype (fixed width, little-endian), the record-key column.
    feature: ClassVar[str]
    dtype: ClassVar[str]
    key: ClassVar[str] = "path"
    #: The built-in model trained when ``--model auto``.
    default_model: ClassVar[str]
    #: With ``--model auto`` on a classification dataset of this kind: the cheap models that are all
    #: trained, the best on the val split published (:mod:`sparkdl_pipe.driver.auto_select`); empty:
    #: ``auto`` trains ``default_model`` alone. The first one wins a tie.
    auto_candidates: ClassVar[tuple[str, ...]] = ()
    #: What a table input's main column (and a DataFrame's string column) holds: ``path`` (a file to
    #: read, as image manifests) or ``content`` (the record itself, as a text column).
    table_reads: ClassVar[str] = "path"
    #: True when :meth:`fit` learns something over the train split before :meth:`encode` (text).
    needs_fit: ClassVar[bool] = False
    #: Names of the per-record counts in :attr:`Prepared.stats`, summed per split in the manifest.
    stat_names: ClassVar[tuple[str, ...]] = ()
    #: Spark DDL of the prepared value between the two passes of a fitted modality.
    prepared_ddl: ClassVar[str] = ""
    #: Extra reject reason codes this kind of data can give (code -> meaning), for --help and docs.
    reasons: ClassVar[dict[str, str]] = {}

    @property
    def ref(self) -> str:
        """How tasks find this object: ``module:attribute`` of a registered instance."""
        from sparkdl_pipe.modalities import ref_of

        return ref_of(self.kind)

    # ---- pure, executors (and the driver in tests) ------------------------------------------
    def prepare(self, data: bytes | None, spec, decoded_by_reader: bool = False) -> Prepared:
        """Raw bytes -> the value :meth:`encode` takes, or a reject.

        ``decoded_by_reader``: the bytes are a re-encoding of text Spark's own reader decoded (JSON
        Lines), which replaced invalid UTF-8 with U+FFFD before the product saw it."""
        raise NotImplementedError

    def encode(self, value, spec, artifacts) -> np.ndarray:
        """A prepared value -> the stored array of ``spec.shape`` and :attr:`dtype`."""
        return np.asarray(value, dtype=self.dtype)

    def prepared_row(self, value) -> dict:
        """The prepared value as the columns of :attr:`prepared_ddl` (fitted modalities)."""
        raise NotImplementedError

    def from_prepared_row(self, row: dict):
        """Inverse of :meth:`prepared_row`."""
        raise NotImplementedError

    def fitted_stats(self, value, stats: dict[str, int], spec) -> dict[str, int]:
        """A prepared record's ``stats`` once :meth:`fit` has completed ``spec`` (text: ``truncated``
        against a fitted ``max_len``). Executors, in the write pass of a fitted modality."""
        return stats

    def load_artifacts(self, dir_url: str, spec, doc: dict):
        """What :meth:`fit` produced, read back from a dataset or model directory (``doc``: its
        manifest or card). Executors (scoring) and driver. None when nothing is fitted."""
        return None

    # ---- driver ------------------------------------------------------------------------------
    def fit(self, spark, train_prepared, spec):
        """(spec with what was fitted recorded in it, artifacts) from the prepared train records."""
        return spec, None

    def save_artifacts(self, artifacts, dir_url: str) -> dict:
        """Write the artifacts into a dataset directory; returns manifest fields describing them."""
        return {}

    def copy_artifacts(self, dataset, model_dir: str, card: dict) -> None:
        """Copy what scoring needs from a dataset (:class:`~sparkdl_pipe.manifest.DatasetInfo`)
        into a model directory, naming it in the model ``card``."""

    def fitted_sizes(self, artifacts) -> dict[str, int]:
        """Sizes of what :meth:`fit` produced, for the job's result (text: ``vocab_size``)."""
        return {}

    def summary_extras(self, stats: dict[str, int], fitted: dict[str, int]) -> str:
        """What an ingest summary line adds for this kind (``; 12 documents truncated``)."""
        return ""

    def model_extras(self, spec) -> dict:
        """Keyword arguments this kind's model builders take beyond the input shape."""
        return {}

    def manifest_extras(self, spec, splits: dict[str, dict]) -> dict:
        """Manifest fields of this kind (summaries of the per-split stats)."""
        return {}

    def schema_json(self, spec, key: str | None = None) -> dict:
        """The stored schema as written in the manifest (readable without Petastorm or pickle)."""
        from sparkdl_pipe.tasks import classification

        return {"name": f"{self.kind.capitalize()}Dataset", "fields": [
            {"name": self.feature, "dtype": np.dtype(self.dtype).name, "shape": list(spec.shape),
             "encoding": "raw-bytes-little-endian-row-major"},
            *classification.TASK.label_fields_json(), {"name": self.key, "dtype": "string", "shape": []}]}

    def describe_input(self) -> str:
        """How an input of this kind is laid out, for error messages."""
        return "a folder of <label>/ folders or a table file (.csv/.tsv/.jsonl/.parquet)"
