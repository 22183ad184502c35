"""Reject reason codes, counting them, and the optional limit that makes rejects fail a job.

Every record that ingest or scoring cannot use is kept in a ``rejects`` table with one of these
stable reason codes (they are stored, so they never change meaning). Hidden files (names starting
with ``.`` or ``_``) are not records: they are skipped and counted separately.

Runs on: driver and executors (plain constants and small helpers, no Spark).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sparkdl_pipe.errors import RejectLimitError

EMPTY_FILE = "empty_file"
UNDECODABLE = "undecodable_image"
TOO_LARGE = "image_too_large"
FILE_TOO_LARGE = "file_too_large"
UNREADABLE = "unreadable_file"
MISSING_FILE = "missing_file"
NO_LABEL = "missing_label"
UNKNOWN_LABEL = "unknown_label"
EMPTY_TEXT = "empty_text"
UNDECODABLE_TEXT = "undecodable_text"
MALFORMED_RECORD = "malformed_record"
MISSING_TARGET = "missing_target"
INVALID_TARGET = "invalid_target"

#: Reason code -> what it means (README and ``--help`` list these).
REASONS: dict[str, str] = {
    EMPTY_FILE: "the file has 0 bytes",
    UNDECODABLE: "not an image Pillow can decode (truncated, corrupt, or another kind of file)",
    TOO_LARGE: "more pixels than --max-pixels (decompression bomb guard)",
    FILE_TOO_LARGE: "the file is larger than the per-file byte limit",
    UNREADABLE: "the file exists but cannot be read (permissions, not a regular file, I/O error)",
    MISSING_FILE: "the file does not exist (a manifest names it, a broken symlink, or it was removed "
                  "between listing and reading)",
    NO_LABEL: "no label (a file outside a <label>/ folder, or an empty manifest label)",
    UNKNOWN_LABEL: "a label not in the allowed --labels list",
    EMPTY_TEXT: "a text that is null, empty, only whitespace, or has no tokens after normalisation",
    UNDECODABLE_TEXT: "bytes that are not valid UTF-8 (--invalid-utf8 reject, the default); from CSV/TSV/"
                      "JSON Lines, whose reader replaces such bytes, a text holding U+FFFD",
    MALFORMED_RECORD: "a table row the reader could not parse (wrong number of fields, broken JSON)",
    MISSING_TARGET: "--target-col: the cell is null or empty",
    INVALID_TARGET: "--target-col: the cell is not a finite number (text, NaN, inf, beyond float32)",
}


def malformed_reason(bad) -> tuple[str, str]:
    """(reason, message) of a table record the reader could not parse (its raw bytes ``bad``)."""
    raw = bytes(bad)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return UNDECODABLE_TEXT, "record is not valid UTF-8: " + repr(raw[:200])
    return MALFORMED_RECORD, f"the reader could not parse this record: {text[:200]!r}"


def arrow_schema(id_col: str = "path"):
    """The Arrow schema of a rejects table: ``id_col`` (the path or record id), reason, message, stage."""
    import pyarrow as pa

    return pa.schema([(id_col, pa.string()), ("reason", pa.string()), ("message", pa.string()),
                      ("stage", pa.string())])


def count_by_reason(reasons: Iterable[str | None]) -> dict[str, int]:
    """Counts per reason code of the non-null reasons.

    >>> count_by_reason(["empty_file", None, "empty_file", "missing_file"])
    {'empty_file': 2, 'missing_file': 1}
    """
    out: dict[str, int] = {}
    for r in reasons:
        if r is not None:
            out[r] = out.get(r, 0) + 1
    return dict(sorted(out.items()))


def format_counts(counts: Mapping[str, int]) -> str:
    """``"empty_file 2, missing_file 1"`` (or ``"none"``)."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def enforce_limit(max_rejects: int | None, counts: Mapping[str, int], examples: list[tuple[str, str]],
                  output: str) -> None:
    """Raise :class:`RejectLimitError` when more than ``max_rejects`` records were rejected.

    Called by the driver before anything is published, so a failing job leaves no output.
    ``examples`` are (path, reason) pairs shown in the message.
    """
    n = sum(counts.values())
    if max_rejects is None or n <= max_rejects:
        return
    ex = "; ".join(f"{p} ({r})" for p, r in examples[:3])
    raise RejectLimitError(
        f"{n} rejected record(s) exceed --max-rejects {max_rejects} ({format_counts(counts)}); nothing "
        f"was written to {output}. First: {ex}")
