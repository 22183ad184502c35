"""Preprocessing specs: frozen, JSON-serialisable, with a fingerprint stored in datasets and models.

Runs on: driver and executors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.options import option

#: Pillow's own default bomb limit is ~89 megapixels; we default lower, configurable per job.
DEFAULT_MAX_PIXELS = 64_000_000


def _image_size(v: list[int]) -> dict[str, int]:
    if len(v) not in (1, 2):
        raise UserInputError("--image-size", "N or HEIGHT WIDTH", " ".join(map(str, v)))
    return {"height": v[0], "width": v[-1]}


@dataclass(frozen=True)
class ImageSpec:
    """How raw image bytes become a model input: decode, colour mode, resize to (height, width).

    ``channels`` is 1 (grayscale, ``L``) or 3 (``RGB``). Resizing stretches to the target size with
    bilinear filtering (area-averaging when shrinking by a large factor, via Pillow's reducing gap).
    Pixels are stored and fed to models as uint8; scaling to [0, 1] is a layer of the model.

    >>> ImageSpec(28, 28, 1).fingerprint()[:8]  # doctest: +SKIP
    """

    height: int = option(28, flag="--image-size", nargs="+", metavar="N", expand=lambda v: _image_size(v),
                         help="output size: N (square) or HEIGHT WIDTH")
    width: int = 28
    channels: int = option(1, choices=(1, 3), help="1 grayscale or 3 RGB")
    max_pixels: int = option(DEFAULT_MAX_PIXELS, help="reject images with more pixels than this (decompression "
                                                      "bombs)")
    kind: str = "image"
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 4096:
                raise UserInputError(f"image {name}", "an integer between 1 and 4096", v)
        if self.channels not in (1, 3):
            raise UserInputError("image channels", "1 (grayscale) or 3 (RGB)", self.channels,
                                 "Use --channels 1 or --channels 3")
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise UserInputError("max_pixels", "a positive integer", self.max_pixels)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ImageSpec:
        if d.get("kind", "image") != "image":
            raise UserInputError("preprocessing spec kind", "'image'", d.get("kind"))
        return cls(height=int(d["height"]), width=int(d["width"]), channels=int(d["channels"]),
                   max_pixels=int(d.get("max_pixels", DEFAULT_MAX_PIXELS)),
                   version=int(d.get("version", 1)))

    def fingerprint(self) -> str:
        """A stable hash of everything that changes what the model sees (not of the bomb limit)."""
        d = {k: v for k, v in self.to_dict().items() if k != "max_pixels"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


NORMALIZATION_FORMS = ("NFKC", "NFC", "NFKD", "NFD")
TOKENIZERS = ("words-v1",)
#: ``--truncation``: which tokens of a document longer than ``max_len`` are kept.
TRUNCATIONS = ("head", "head-tail")
#: ``--max-len auto``: this percentile of the train split's token counts, capped at ``--max-len-cap``.
AUTO_MAX_LEN_PERCENTILE = 95
#: ``max_len`` of a spec whose length ingest fits (``--max-len auto``), until the fit replaces it.
MAX_LEN_AUTO = -1


def _max_len(v: int | str) -> int:
    """``--max-len``: a positive integer, or ``auto`` (:data:`MAX_LEN_AUTO`, fitted on the train split)."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return MAX_LEN_AUTO
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return v
    if isinstance(v, str) and v.strip().isdigit() and int(v) >= 1:
        return int(v)
    raise UserInputError("--max-len", "a positive integer or 'auto'", v)


@dataclass(frozen=True)
class TextSpec:
    """How raw text becomes a model input: Unicode normalisation, optional lower-casing, the
    ``words-v1`` tokenizer, the vocabulary lookup, truncation/padding to ``max_len`` int32 ids.

    ``vocab_size`` (most frequent tokens kept) and ``min_count`` say how ingest builds the
    vocabulary; ``vocab_fingerprint`` and ``vocab_len`` (ids including the reserved 0 = padding and
    1 = out-of-vocabulary) are filled in by ingest from the vocabulary it built, so the spec's
    fingerprint changes whenever the token ids would.

    >>> TextSpec(max_len=64).shape
    (64,)
    """

    max_len: int = option(64, parse=_max_len, metavar="N|auto",
                          help="tokens per document after truncation/padding; auto: the 95th percentile of the "
                               "train split's token counts, capped at --max-len-cap (recorded in the manifest)")
    lowercase: bool = option(True, flag="--keep-case", invert=True, help="do not lower-case")
    normalization: str = option("NFKC", choices=NORMALIZATION_FORMS, help="Unicode normalisation form")
    tokenizer: str = "words-v1"
    vocab_size: int = option(20000, help="most frequent train tokens kept")
    min_count: int = option(2, help="minimum train count of a vocabulary token")
    vocab_fingerprint: str = ""
    vocab_len: int = 0
    truncation: str = option("head", choices=TRUNCATIONS,
                             help="a document longer than max_len keeps its first max_len tokens (head), or its "
                                  "first max_len/2 and its last max_len - max_len/2 tokens (head-tail)")
    max_len_cap: int = option(1024, help="the largest length --max-len auto may pick")
    #: True when ingest fitted ``max_len`` on the train split (``--max-len auto``).
    max_len_auto: bool = False
    kind: str = "text"
    version: int = 1
    #: Bytes that are not valid UTF-8: ``reject`` the record (undecodable_text) or ``replace`` them
    #: with U+FFFD (counted in the manifest). Valid UTF-8 is accepted whatever characters it holds.
    invalid_utf8: str = option(
        "reject", choices=("reject", "replace"),
        help="bytes that are not valid UTF-8: reject the record (undecodable_text) or replace them with U+FFFD "
             "(counted in the manifest). Valid UTF-8 is accepted whatever it holds, U+FFFD included, where the "
             "product reads the bytes itself (.txt files, binary Parquet columns; Parquet strings are UTF-8 by "
             "definition). CSV/TSV and JSON Lines are decoded by Spark's reader, which replaces invalid bytes "
             "with U+FFFD before the product sees them: there a U+FFFD cannot be told from an invalid byte and "
             "is treated as one")

    def __post_init__(self) -> None:
        if isinstance(self.max_len, str):  # TextSpec(max_len="auto") from Python, as the flag takes it
            object.__setattr__(self, "max_len", _max_len(self.max_len))
        if not isinstance(self.max_len, int) or isinstance(self.max_len, bool) or \
                not (1 <= self.max_len <= 100_000 or self.max_len == MAX_LEN_AUTO):
            raise UserInputError("--max-len", "an integer between 1 and 100000, or auto", self.max_len)
        if self.truncation not in TRUNCATIONS:
            raise UserInputError("--truncation", f"one of {list(TRUNCATIONS)}", self.truncation)
        if not isinstance(self.max_len_cap, int) or not 1 <= self.max_len_cap <= 100_000:
            raise UserInputError("--max-len-cap", "an integer between 1 and 100000", self.max_len_cap)
        if self.normalization not in NORMALIZATION_FORMS:
            raise UserInputError("--normalization", f"one of {list(NORMALIZATION_FORMS)}", self.normalization)
        if self.tokenizer not in TOKENIZERS:
            raise UserInputError("tokenizer", f"one of {list(TOKENIZERS)}", self.tokenizer)
        if not isinstance(self.vocab_size, int) or not 1 <= self.vocab_size <= 10_000_000:
            raise UserInputError("--vocab-size", "an integer between 1 and 10000000", self.vocab_size)
        if not isinstance(self.min_count, int) or self.min_count < 1:
            raise UserInputError("--min-count", "an integer of at least 1", self.min_count)
        if self.invalid_utf8 not in ("reject", "replace"):
            raise UserInputError("--invalid-utf8", "reject or replace", self.invalid_utf8)

    @property
    def shape(self) -> tuple[int]:
        return (self.max_len,)

    @property
    def needs_length_fit(self) -> bool:
        """True until ingest has fitted ``max_len`` (``--max-len auto``)."""
        return self.max_len == MAX_LEN_AUTO

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TextSpec:
        if d.get("kind") != "text":
            raise UserInputError("preprocessing spec kind", "'text'", d.get("kind"))
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def fingerprint(self) -> str:
        """A stable hash of everything that changes the token ids a text becomes (the default
        ``invalid_utf8`` policy is left out, so specs written before it existed keep their hash)."""
        d = self.to_dict()
        # defaults of fields added later are left out, so older specs keep their hash
        for k, default in (("invalid_utf8", "reject"), ("truncation", "head"), ("max_len_cap", 1024),
                           ("max_len_auto", False)):
            if d[k] == default:
                del d[k]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def spec_from_dict(d: dict):
    """Rebuild a preprocessing spec from its JSON form (as stored in manifests and model cards), for
    any registered kind of data (:mod:`sparkdl_pipe.modalities`)."""
    from sparkdl_pipe import modalities

    kind = d.get("kind")
    if kind not in modalities.kinds():
        raise UserInputError("preprocessing spec kind", f"one of {modalities.kinds()}", kind)
    return modalities.get(str(kind)).spec_type.from_dict(d)
