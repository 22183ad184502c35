"""Text ingest on a real local[2] SparkSession: every input format, vocabulary, truncation, rejects."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from sparkdl_pipe.config import IngestTextConfig, SplitConfig
from sparkdl_pipe.driver.ingest import run_ingest_text
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.executor.data import read_split
from sparkdl_pipe.preprocess.spec import TextSpec
from sparkdl_pipe.preprocess.text import Vocabulary, encode_tokens, load_vocabulary, text_to_tokens
from tests.text_corpus import expected_table_rejects, make_docs, write_table, write_txt_folder

SPEC = TextSpec(max_len=16, vocab_size=1000, min_count=2)


@pytest.fixture(scope="module")
def docs():
    return make_docs(240)


def _stored(out: str, split: str) -> pd.DataFrame:
    p = os.path.join(out, split)
    return pd.read_parquet(p) if os.path.exists(p) else pd.DataFrame(columns=["tokens", "label", "label_name", "id"])


@pytest.fixture(scope="module")
def ingested(spark, docs, tmp_path_factory):
    """One ingest per table format, made on first use: {fmt: (output dir, result)}."""
    cache: dict = {}

    def get(fmt: str):
        if fmt not in cache:
            d = tmp_path_factory.mktemp(f"text-{fmt}")
            src = str(d / f"in.{fmt}")
            write_table(docs, src, fmt)
            out = str(d / "ds")
            cache[fmt] = (out, run_ingest_text(spark, IngestTextConfig(src, out, text=SPEC, id_col="id")))
        return cache[fmt]

    return get


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_table_formats_reconcile_and_store_the_tokenizer_output(docs, ingested, fmt):
    out, res = ingested(fmt)
    want = expected_table_rejects(fmt)
    assert res.input_records == len(docs) + sum(want.values())
    assert res.rejects_by_reason == want and res.rejected == sum(want.values())
    assert sum(res.counts.values()) == len(docs) == res.input_records - res.rejected
    assert res.labels == ["neg", "pos"] and min(res.counts.values()) > 0

    man = json.load(open(os.path.join(out, "_sparkdl_manifest.json")))
    assert man["kind"] == "text" and man["input_kind"] == fmt and man["input_records"] == res.input_records
    assert man["schema"]["fields"][0]["shape"] == [16]
    rej = pd.read_parquet(os.path.join(out, "rejects"))
    assert len(rej) == res.rejected and rej["message"].notna().all()
    assert dict(rej.groupby("reason").size()) == want
    # an unparsable JSON line has no id column value: its id is the hash of the raw line
    assert "bad-bytes" in set(rej["id"]) or (fmt == "jsonl" and rej["id"].str.startswith("sha1:").sum() == 1)

    # every accepted document is stored once, as exactly the ids the pure functions give
    vocab = load_vocabulary(os.path.join(out, "vocab.json"))
    index = vocab.index()
    stored = pd.concat([_stored(out, s) for s in ("train", "val", "test")])
    assert sorted(stored["id"]) == sorted(docs["id"])
    by_id = docs.set_index("id")
    for r in stored.itertuples():
        want_ids, _ = encode_tokens(text_to_tokens(by_id.loc[r.id, "text"], SPEC), index, 16)
        assert np.frombuffer(r.tokens, dtype="<i4").tolist() == want_ids.tolist()
        assert r.label_name == by_id.loc[r.id, "label"] and r.label == ["neg", "pos"].index(r.label_name)


def test_same_corpus_same_vocabulary_and_splits_in_every_table_format(ingested):
    fps, splits = set(), []
    for fmt in ("csv", "tsv", "jsonl", "parquet"):
        out, _ = ingested(fmt)
        fps.add(json.load(open(os.path.join(out, "_sparkdl_manifest.json")))["vocabulary"]["fingerprint"])
        splits.append({s: sorted(_stored(out, s)["id"]) for s in ("train", "val", "test")})
    assert len(fps) == 1 and all(sp == splits[0] for sp in splits)


def test_txt_folders_label_from_parent_folder(spark, docs, tmp_path):
    root = str(tmp_path / "txt")
    want = write_txt_folder(docs, root)
    out = str(tmp_path / "ds")
    res = run_ingest_text(spark, IngestTextConfig(root, out, text=SPEC))
    assert res.input_records == len(docs) + 3 and res.rejects_by_reason == want
    assert sum(res.counts.values()) == len(docs) and res.skipped_hidden == 1
    stored = pd.concat([_stored(out, s) for s in ("train", "val", "test")])
    assert len(stored) == len(docs)
    assert all(p.split("/")[-2] == lab for p, lab in zip(stored["id"], stored["label_name"], strict=True))


def test_vocabulary_from_train_split_only_min_count_deterministic(spark, docs, tmp_path):
    d = docs.copy()
    d["split"] = ["test" if i % 4 == 0 else "train" for i in range(len(d))]
    # a token that is frequent in test rows only, and one that appears once in train
    d.loc[d["split"] == "test", "text"] += " testonlyword testonlyword"
    first_train = d.index[d["split"] == "train"][0]
    d.loc[first_train, "text"] += " hapaxlegomenon"
    src = str(tmp_path / "in.csv")
    d.to_csv(src, index=False)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_ingest_text(spark, IngestTextConfig(src, a, text=SPEC, id_col="id", split=SplitConfig(val_fraction=0.2)))
    vocab = load_vocabulary(os.path.join(a, "vocab.json"))
    assert "testonlyword" not in vocab.tokens and "hapaxlegomenon" not in vocab.tokens
    assert "<pad>" not in vocab.tokens and "<oov>" not in vocab.tokens
    assert list(vocab.counts) == sorted(vocab.counts, reverse=True) and min(vocab.counts) >= 2
    # recount by hand over exactly the stored train rows: same top-K, same order
    train_ids = set(_stored(a, "train")["id"])
    from collections import Counter

    c = Counter(t for r in d.itertuples() if r.id in train_ids for t in text_to_tokens(r.text, SPEC))
    assert vocab == Vocabulary.from_counts(c.items(), SPEC.vocab_size, SPEC.min_count)
    # test documents: the test-only word became the out-of-vocabulary id 1; padding is 0 at the end
    test = _stored(a, "test")
    assert len(test) == 60
    for cell in test["tokens"]:
        ids = np.frombuffer(cell, dtype="<i4")
        n = int((ids != 0).sum())
        assert (ids[:n] != 0).all() and (ids[n:] == 0).all()
    # determinism: other partitioning, same vocabulary file and same splits
    spark.conf.set("spark.sql.shuffle.partitions", "7")
    try:
        run_ingest_text(spark, IngestTextConfig(src, b, text=SPEC, id_col="id", split=SplitConfig(val_fraction=0.2)))
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")
    assert open(os.path.join(a, "vocab.json")).read() == open(os.path.join(b, "vocab.json")).read()
    for s in ("train", "val", "test"):
        assert sorted(_stored(a, s)["id"]) == sorted(_stored(b, s)["id"])


def test_truncation_is_counted(spark, docs, tmp_path):
    src = str(tmp_path / "in.jsonl")
    write_table(docs, src, "jsonl")
    out = str(tmp_path / "ds")
    spec = TextSpec(max_len=12, min_count=1)
    res = run_ingest_text(spark, IngestTextConfig(src, out, text=spec))
    want = sum(len(text_to_tokens(t, spec)) > 12 for t in docs["text"])
    assert 0 < want < len(docs)
    man = json.load(open(os.path.join(out, "_sparkdl_manifest.json")))
    assert res.truncated == want == man["truncated"]["count"]
    assert sum(man["splits"][s]["truncated"] for s in ("train", "val", "test")) == want
    x, y = next(iter(read_split("file://" + os.path.join(out, "train"), (12,), kind="text")))
    assert x.dtype == np.int32 and x.shape[1] == 12 and y.dtype == np.int32


def test_clear_errors_for_missing_columns_and_unknown_format(spark, docs, tmp_path):
    src = str(tmp_path / "in.csv")
    write_table(docs, src, "csv")
    with pytest.raises(UserInputError, match="no column 'review'.*--text-col"):
        run_ingest_text(spark, IngestTextConfig(src, str(tmp_path / "o"), text_col="review"))
    with pytest.raises(UserInputError, match="no column 'stars'"):
        run_ingest_text(spark, IngestTextConfig(src, str(tmp_path / "o"), label_col="stars"))
    odd = tmp_path / "corpus.xyz"
    odd.write_text("text,label\n")
    with pytest.raises(UserInputError, match="--input-format"):
        run_ingest_text(spark, IngestTextConfig(str(odd), str(tmp_path / "o")))
    assert not [p for p in os.listdir(tmp_path) if "staging" in p]


def test_txt_folder_listed_by_the_executors_gives_the_same_dataset(spark, docs, tmp_path):
    # the executors' listing hands the write tasks buckets of records; the text modality's fit pass
    # reads them keyed: same splits, labels, rejects and vocabulary as the driver's walk
    root = str(tmp_path / "txt")
    write_txt_folder(docs, root)
    got = {}
    for name, limit in (("driver", 50_000), ("executors", 0)):
        out = str(tmp_path / name)
        res = run_ingest_text(spark, IngestTextConfig(root, out, text=SPEC, driver_listing_max_files=limit))
        man = json.load(open(os.path.join(out, "_sparkdl_manifest.json")))
        rows = {s: sorted(zip(_stored(out, s)["id"], _stored(out, s)["label_name"], strict=True))
                for s in ("train", "val", "test")}
        splits = {s: {k: v for k, v in d.items() if k != "row_groups"} for s, d in man["splits"].items()}
        got[name] = (res.counts, res.rejects_by_reason, res.skipped_hidden, splits, man["labels"],
                     man["vocabulary"]["fingerprint"], rows)
    assert got["executors"] == got["driver"] and sum(len(r) for r in got["driver"][-1].values()) == len(docs)
