"""A small synthetic labelled corpus written in every input format ingest-text reads."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

POS = ["great", "excellent", "wonderful", "superb", "delightful", "moving"]
NEG = ["awful", "boring", "terrible", "dull", "mess", "tedious"]
FILLER = ["the", "movie", "film", "plot", "actor", "scene", "and", "with", "a", "of", "is", "it", "2", "3.5"]


def make_docs(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """``id, text, label`` rows; the label is decided by sentiment words among filler, punctuation,
    capitals, embedded newlines, quotes and commas (so CSV quoting is exercised)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lab = "pos" if i % 2 == 0 else "neg"
        words = list(rng.choice(FILLER, size=int(rng.integers(4, 30))))
        for w in rng.choice(POS if lab == "pos" else NEG, size=3):
            words.insert(int(rng.integers(0, len(words) + 1)), str(w))
        text = " ".join(words)
        if i % 5 == 0:
            text = text.replace(" ", "\n", 1) + ', "quoted", end.'  # embedded newline, quotes, comma
        if i % 7 == 0:
            text = text.upper() + "!!"
        rows.append({"id": f"doc-{i:04d}", "text": text, "label": lab})
    return pd.DataFrame(rows)


#: Bad records appended to every table format, and the reject reason each must get.
BAD_TABLE_ROWS = [({"id": "bad-empty", "text": "", "label": "pos"}, "empty_text"),
                  ({"id": "bad-space", "text": "   \n\t ", "label": "neg"}, "empty_text"),
                  ({"id": "bad-nolabel", "text": "a great film", "label": ""}, "missing_label")]


def write_table(df: pd.DataFrame, path: str, fmt: str) -> None:
    """``df`` plus :data:`BAD_TABLE_ROWS` as csv/tsv/jsonl/parquet (and one invalid-UTF-8 row for text formats)."""
    full = pd.concat([df, pd.DataFrame([r for r, _ in BAD_TABLE_ROWS])], ignore_index=True)
    if fmt in ("csv", "tsv"):
        full.to_csv(path, index=False, sep="," if fmt == "csv" else "\t")
        with open(path, "ab") as f:
            sep = b"," if fmt == "csv" else b"\t"
            f.write(b"bad-bytes" + sep + b'"caf\xe9 latin-1 bytes"' + sep + b"pos\n")
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for r in full.to_dict("records"):
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        with open(path, "ab") as f:
            f.write(b'{"id": "bad-bytes", "text": "caf\xe9 latin-1 bytes", "label": "pos"}\n')
    elif fmt == "parquet":
        full["text"] = [t.encode() for t in full["text"]]  # a binary text column: bytes decoded strictly
        bad = pd.DataFrame([{"id": "bad-bytes", "text": b"caf\xe9 latin-1 bytes", "label": "pos"}])
        pd.concat([full, bad], ignore_index=True).to_parquet(path)
    else:
        raise ValueError(fmt)


def expected_table_rejects(fmt: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, reason in BAD_TABLE_ROWS:
        out[reason] = out.get(reason, 0) + 1
    out["undecodable_text"] = 1
    return out


def write_txt_folder(df: pd.DataFrame, root: str) -> dict[str, int]:
    """``root/<label>/<id>.txt`` plus bad files; returns the expected rejects by reason."""
    for r in df.itertuples():
        os.makedirs(os.path.join(root, r.label), exist_ok=True)
        with open(os.path.join(root, r.label, f"{r.id}.txt"), "w", encoding="utf-8") as f:
            f.write(r.text)
    open(os.path.join(root, "pos", "empty.txt"), "wb").close()
    with open(os.path.join(root, "neg", "latin1.txt"), "wb") as f:
        f.write(b"caf\xe9 latin-1 bytes")
    with open(os.path.join(root, "orphan.txt"), "w") as f:
        f.write("great film but no label folder")
    with open(os.path.join(root, "pos", ".hidden.txt"), "w") as f:
        f.write("skipped and counted")
    return {"empty_text": 1, "undecodable_text": 1, "missing_label": 1}
