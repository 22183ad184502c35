"""A toy third kind of data, written outside the package against the Modality interface: folders of
``.npy`` arrays (``<label>/<name>.npy``, float vectors of a fixed length). The whole kind is this
file; the pipelines, the CLI dispatch and the registry are not edited, and one registration line
(``modalities.register("npy", "tests.toy_npy:NPY")``) makes it usable."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass

import numpy as np

from sparkdl_pipe.modalities import Modality, Prepared


@dataclass(frozen=True)
class NpySpec:
    """Arrays of ``length`` float32 values."""

    length: int = 16
    kind: str = "npy"
    version: int = 1

    @property
    def shape(self) -> tuple[int]:
        return (self.length,)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NpySpec:
        return cls(int(d["length"]), version=int(d.get("version", 1)))

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class NpyModality(Modality):
    kind = "npy"
    spec_type = NpySpec
    feature = "array"
    dtype = "<f4"
    key = "path"
    default_model = "tests.toy_npy:build_body"
    table_reads = "path"
    reasons = {"undecodable_array": "not a .npy array numpy can load without pickle",
               "wrong_shape": "an array of another shape than the spec's"}

    def prepare(self, data, spec, decoded_by_reader=False) -> Prepared:
        if not data:
            return Prepared(None, "empty_file", "the file has 0 bytes")
        try:
            arr = np.load(io.BytesIO(bytes(data)), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            return Prepared(None, "undecodable_array", f"{type(e).__name__}: {e}"[:300])
        if arr.shape != spec.shape:
            return Prepared(None, "wrong_shape", f"shape {arr.shape}, the spec says {spec.shape}")
        return Prepared(arr.astype("<f4"))


NPY = NpyModality()


def build_body(input_shape, n_outputs):
    """A small MLP body over the float vector (the task puts its head on top)."""
    import tf_keras as keras

    inp = keras.Input(shape=tuple(input_shape), name="array")
    x = keras.layers.Dense(32, activation="relu")(inp)
    return keras.Model(inp, x, name="npy_mlp")
