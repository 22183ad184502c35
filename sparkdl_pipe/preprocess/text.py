"""Text normalisation, tokenization, vocabulary and encoding, a batch at a time. Pure Python + numpy.

Ingest and scoring call exactly these functions with the :class:`~sparkdl_pipe.preprocess.spec.TextSpec`
and :class:`Vocabulary` recorded in the dataset manifest and the model card, so a document scored
from raw text becomes the same token ids it became at ingest.

Runs on: executors (ingest and scoring) and the driver (vocabulary files, tests).
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.preprocess.spec import TextSpec

# Reason codes for rejected text records (all codes and their meaning: sparkdl_pipe.rejects).
from sparkdl_pipe.rejects import EMPTY_TEXT, MALFORMED_RECORD, UNDECODABLE_TEXT  # noqa: E402

__all__ = ["EMPTY_TEXT", "MALFORMED_RECORD", "UNDECODABLE_TEXT"]

PAD_ID, OOV_ID = 0, 1
PAD, OOV = "<pad>", "<oov>"
VOCAB_FILE = "vocab.json"
VOCAB_FORMAT = "sparkdl_pipe.vocabulary"

# Curly quotes and dashes that NFKC leaves alone, folded so "don’t" and "don't" are one token.
_FOLD = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "\u201c": '"',
                       "\u201d": '"', "\u201e": '"', "\u2013": "-", "\u2014": "-", "\u2212": "-"})
_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b-\u200d\ufeff]")
_SPACE = re.compile(r"\s+")
#: words-v1: numbers with inner separators (3.5, 1,000, 10:30) and an optional %; words of letters
#: and digits with inner apostrophes (don't, o'brien, mp3); a run of one repeated punctuation mark
#: (!!!, ...) as one token; any other symbol as its own token.
_TOKEN = re.compile(r"""
      \d+(?:[.,:]\d+)*%?
    | [^\W_]+(?:'[^\W_]+)*
    | (?P<p>[^\w\s]|_)(?P=p)*
""", re.VERBOSE)


def normalize(text: str, spec: TextSpec) -> str:
    """Unicode-normalise (``spec.normalization``), fold curly quotes/dashes, drop control and
    zero-width characters, optionally lower-case (``str.casefold``), collapse whitespace.

    >>> normalize("  Ｔｈｅ  ﬁlm’s\\tGREAT ", TextSpec())
    "the film's great"
    """
    t = unicodedata.normalize(spec.normalization, text).translate(_FOLD)  # type: ignore[arg-type]
    t = _CONTROL.sub("", t)
    if spec.lowercase:
        t = t.casefold()
    return _SPACE.sub(" ", t).strip()


def tokenize(normalized: str) -> list[str]:
    """Split normalised text into word, number and punctuation tokens (tokenizer ``words-v1``).

    >>> tokenize("it's 2.5 hours... too long!!")
    ["it's", '2.5', 'hours', '...', 'too', 'long', '!!']
    """
    return [m.group(0) for m in _TOKEN.finditer(normalized)]


def text_to_tokens(text: str, spec: TextSpec) -> list[str]:
    """``tokenize(normalize(text))``: the whole text pipeline up to the vocabulary lookup."""
    return tokenize(normalize(text, spec))


#: What to do with bytes that are not valid UTF-8 (``--invalid-utf8``).
INVALID_UTF8_POLICIES = ("reject", "replace")


def decode_text_checked(data: bytes | str | None, invalid_utf8: str = "reject"
                        ) -> tuple[str | None, str | None, str | None, bool]:
    """(text, reject reason, message, invalid bytes replaced?) from raw bytes or a reader's string.

    Bytes are decoded strictly as UTF-8 (a BOM removed): valid UTF-8 is accepted whatever it holds,
    U+FFFD included (mail and web corpora carry it from an earlier lossy decoding). Invalid bytes
    are rejected (``invalid_utf8="reject"``) or replaced by U+FFFD and counted (``"replace"``).
    A *string* was decoded by a lenient reader (Spark's JSON source) that already replaced invalid
    bytes with U+FFFD: there a U+FFFD cannot be told apart from an invalid byte, so it is treated
    as one (the same policy applies).
    """
    if data is None:
        return None, EMPTY_TEXT, "no text (null)", False
    replaced = False
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            if invalid_utf8 != "replace":
                return None, UNDECODABLE_TEXT, f"not valid UTF-8: {e}"[:300], False
            text, replaced = bytes(data).decode("utf-8-sig", errors="replace"), True
    else:
        text = str(data)
        if "\ufffd" in text:
            if invalid_utf8 != "replace":
                return None, UNDECODABLE_TEXT, ("text holds U+FFFD replacement characters where the reader "
                                                "found bytes that were not valid UTF-8"), False
            replaced = True
    if not text.strip():
        return None, EMPTY_TEXT, "text is empty or only whitespace", replaced
    return text, None, None, replaced


def decode_text(data: bytes | str | None, invalid_utf8: str = "reject") -> tuple[str | None, str | None, str | None]:
    """(text, reject reason, message): :func:`decode_text_checked` without the replaced flag."""
    return decode_text_checked(data, invalid_utf8)[:3]


@dataclass(frozen=True)
class Vocabulary:
    """Token -> id. ``tokens[i]`` has id ``i + 2``; id 0 is padding, id 1 out-of-vocabulary.

    Stored as plain JSON (``vocab.json``) in the dataset directory and copied into the model
    directory, so scoring needs nothing but the model directory.
    """

    tokens: tuple[str, ...]
    counts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens) or PAD in self.tokens or OOV in self.tokens:
            raise DatasetError("vocabulary", "distinct tokens, none of them reserved", len(self.tokens))

    @property
    def size(self) -> int:
        """Number of ids, reserved ones included (the embedding's input dimension)."""
        return len(self.tokens) + 2

    def index(self) -> dict[str, int]:
        return {t: i + 2 for i, t in enumerate(self.tokens)}

    @functools.cached_property
    def lookup(self) -> dict[str, int]:
        """:meth:`index`, built once per object (executors encode many records with one vocabulary)."""
        return self.index()

    def __getstate__(self) -> dict:  # the cached lookup is rebuilt where it is used, not shipped
        return {k: v for k, v in self.__dict__.items() if k != "lookup"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(self.tokens).encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"format": VOCAB_FORMAT, "version": 1, "reserved": {PAD: PAD_ID, OOV: OOV_ID},
                "fingerprint": self.fingerprint(), "size": self.size, "tokens": list(self.tokens),
                "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        if d.get("format") != VOCAB_FORMAT:
            raise DatasetError("vocabulary file format", VOCAB_FORMAT, d.get("format"))
        v = cls(tuple(d["tokens"]), tuple(int(c) for c in d.get("counts", [])))
        if d.get("fingerprint") and d["fingerprint"] != v.fingerprint():
            raise DatasetError("vocabulary fingerprint", d["fingerprint"], v.fingerprint(),
                               "The vocabulary file was changed after it was written")
        return v

    @classmethod
    def from_counts(cls, counts: Iterable[tuple[str, int]], max_tokens: int, min_count: int) -> Vocabulary:
        """Top ``max_tokens`` by count (>= ``min_count``), ties broken by the token's code points.

        >>> Vocabulary.from_counts([("b", 2), ("a", 2), ("c", 5), ("d", 1)], 10, 2).tokens
        ('c', 'a', 'b')
        """
        kept = sorted(((t, int(c)) for t, c in counts if int(c) >= min_count and t not in (PAD, OOV)),
                      key=lambda tc: (-tc[1], tc[0]))[:max_tokens]
        return cls(tuple(t for t, _ in kept), tuple(c for _, c in kept))


def save_vocabulary(vocab: Vocabulary, path: str) -> None:
    """Write ``vocab.json`` to a local path or URL (atomically on local filesystems)."""
    from sparkdl_pipe import storage

    storage.write_json(path, vocab.to_dict())


def load_vocabulary(path: str) -> Vocabulary:
    """Read a ``vocab.json`` (local path or URL); a clear error when it is missing or altered."""
    from sparkdl_pipe import storage

    if not storage.exists(storage.to_url(path)):
        raise DatasetError(f"vocabulary file {path} does not exist", fix="Re-run ingest-text / train")
    return Vocabulary.from_dict(storage.read_json(storage.to_url(path)))


def length_percentile(counts: Sequence[tuple[int, int]], percentile: float) -> int:
    """The ``percentile``-th percentile (nearest rank) of document lengths given as sorted
    ``(length, number of documents)`` pairs.

    >>> length_percentile([(3, 90), (10, 5), (400, 5)], 95)
    10
    """
    total = sum(c for _, c in counts)
    if not total:
        return 0
    rank = max(1, -(-int(percentile * total) // 100))
    seen = 0
    for n, c in counts:
        seen += c
        if seen >= rank:
            return n
    return counts[-1][0]


def keep_tokens(tokens: Sequence[str], max_len: int, truncation: str = "head") -> Sequence[str]:
    """The tokens a document of more than ``max_len`` keeps: its first ``max_len`` (``head``), or its
    first ``max_len // 2`` and its last ``max_len - max_len // 2`` (``head-tail``).

    >>> keep_tokens(list("abcdefg"), 4, "head-tail")
    ['a', 'b', 'f', 'g']
    """
    if len(tokens) <= max_len:
        return tokens
    if truncation == "head-tail":
        head = max_len // 2
        return [*tokens[:head], *tokens[len(tokens) - (max_len - head):]]
    return tokens[:max_len]


def encode_tokens(tokens: Sequence[str], index: dict[str, int], max_len: int,
                  truncation: str = "head") -> tuple[np.ndarray, bool]:
    """(int32 ids of length ``max_len``, truncated?): the tokens :func:`keep_tokens` keeps, padded
    with 0 at the end."""
    out = np.zeros(max_len, dtype=np.int32)
    kept = keep_tokens(tokens, max_len, truncation)
    out[:len(kept)] = [index.get(t, OOV_ID) for t in kept]
    return out, len(tokens) > max_len


def encode_texts(texts: Iterable[str], spec: TextSpec, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, max_len) int32 ids and an (N,) truncated flag for already-decoded texts."""
    rows, flags = [], []
    for t in texts:
        ids, cut = encode_tokens(text_to_tokens(t, spec), index, spec.max_len, spec.truncation)
        rows.append(ids)
        flags.append(cut)
    if not rows:
        return np.zeros((0, spec.max_len), dtype=np.int32), np.zeros(0, dtype=bool)
    return np.stack(rows), np.asarray(flags, dtype=bool)


def ids_to_bytes(ids: np.ndarray) -> bytes:
    """One row of ids as the stored cell: raw little-endian int32."""
    return np.ascontiguousarray(ids, dtype="<i4").tobytes()

