"""Issue 27: --max-len auto, head+tail truncation, the fastText body on 2 real ranks, and the MLlib
TF-IDF + LogisticRegression baseline on the same ingested splits."""

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest

from sparkdl_pipe import manifest as mf
from sparkdl_pipe import options
from sparkdl_pipe.cli import build_parser
from sparkdl_pipe.config import BaselineTextConfig, IngestTextConfig, ScoreConfig, SplitConfig, TrainConfig
from sparkdl_pipe.driver.baseline import run_text_baseline
from sparkdl_pipe.driver.ingest import run_ingest_text
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.driver.train import run_training
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.preprocess.spec import TextSpec
from sparkdl_pipe.preprocess.text import keep_tokens, length_percentile, load_vocabulary, text_to_tokens
from sparkdl_pipe.storage import MANIFEST_FILE
from tests.test_cli_jobs import CLI, run
from tests.text_corpus import FILLER, NEG, POS

CAP = 40


def long_docs(n: int, seed: int = 0) -> pd.DataFrame:
    """Documents of 50-120 filler tokens whose only label words (3 of them) are in the last 8 tokens:
    a model that sees only the head of a long document cannot tell the classes apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lab = "pos" if i % 2 == 0 else "neg"
        words = [str(w) for w in rng.choice(FILLER, size=int(rng.integers(50, 120)))]
        tail = [str(w) for w in rng.choice(FILLER, size=5)]
        for w in rng.choice(POS if lab == "pos" else NEG, size=3):
            tail.insert(int(rng.integers(0, len(tail) + 1)), str(w))
        rows.append({"id": f"long-{i:04d}", "text": " ".join(words + tail), "label": lab})
    return pd.DataFrame(rows)


def _stored(ds: str, split: str) -> pd.DataFrame:
    return pd.read_parquet(os.path.join(ds, split))


@pytest.fixture(scope="module")
def long_ds(spark, tmp_path_factory):
    d = tmp_path_factory.mktemp("long-text")
    docs = long_docs(480)
    src = str(d / "long.csv")
    docs.to_csv(src, index=False)
    out = str(d / "ds")
    spec = TextSpec(max_len="auto", max_len_cap=CAP, truncation="head-tail", min_count=1)  # type: ignore[arg-type]
    res = run_ingest_text(spark, IngestTextConfig(src, out, text=spec, id_col="id",
                                                  split=SplitConfig(val_fraction=0.15, test_fraction=0.15)))
    return docs, src, out, res


def test_head_tail_and_percentile_rules():
    toks = [str(i) for i in range(10)]
    assert keep_tokens(toks, 4) == ["0", "1", "2", "3"]
    assert keep_tokens(toks, 5, "head-tail") == ["0", "1", "7", "8", "9"]
    assert keep_tokens(toks[:3], 5, "head-tail") == toks[:3]
    assert length_percentile([(3, 90), (10, 5), (400, 5)], 95) == 10
    assert length_percentile([(3, 90), (10, 5), (400, 5)], 96) == 400
    assert TextSpec(max_len="auto").needs_length_fit and TextSpec(max_len="128").max_len == 128  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="--max-len"):
        TextSpec(max_len="long")  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="--truncation"):
        TextSpec(truncation="tail")
    # the spec of a dataset written before these options keeps its fingerprint
    old = {k: v for k, v in TextSpec(max_len=64).to_dict().items()
           if k not in ("invalid_utf8", "truncation", "max_len_cap", "max_len_auto")}
    assert TextSpec(max_len=64).fingerprint() == hashlib.sha256(
        json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert TextSpec(max_len=64, truncation="head-tail").fingerprint() != TextSpec(max_len=64).fingerprint()


def test_fasttext_body_on_short_and_padded_documents():
    from sparkdl_pipe.models import get_builder

    m = get_builder("fasttext")((6,), 2, vocab_size=30)
    x = np.array([[5, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [5, 6, 7, 8, 9, 10], [7, 5, 0, 0, 0, 0]], dtype=np.int32)
    p = np.asarray(m(x))
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    bigrams = np.asarray(m.get_layer("hashed_bigrams")(x))
    assert bigrams.shape == (4, 6) and ((bigrams > 0) == (x > 0)).all()
    assert bigrams[2, 1] != bigrams[3, 1]  # (5, 6) and (7, 5) land in different buckets
    assert bigrams[0, 0] != bigrams[1, 0] and bigrams[0, 0] == m.get_layer("hashed_bigrams")(x[:1, ::-1][:, ::-1])[0, 0]


def test_max_len_auto_is_fitted_on_train_and_recorded(long_ds):
    docs, _, ds, res = long_ds
    man = json.load(open(os.path.join(ds, "_sparkdl_manifest.json")))
    assert man["max_len"] == {"value": CAP, "rule": "auto", "percentile": 95, "cap": CAP,
                              "of": "token counts of the train split"}
    assert man["preprocess"]["max_len"] == CAP and man["preprocess"]["max_len_auto"] is True
    assert man["schema"]["fields"][0]["shape"] == [CAP]
    spec = TextSpec.from_dict(man["preprocess"])
    lengths = {r.id: len(text_to_tokens(r.text, spec)) for r in docs.itertuples()}
    assert res.truncated == man["truncated"]["count"] == sum(n > CAP for n in lengths.values()) == len(docs)
    assert man["truncated"]["truncation"] == "head-tail"
    # below the cap, the 95th percentile of the train split's lengths (nearest rank) is what auto picks
    train_ids = set(_stored(ds, "train")["id"])
    train_len = sorted(lengths[i] for i in train_ids)
    p95 = train_len[int(np.ceil(0.95 * len(train_len))) - 1]
    assert p95 > CAP  # every document is longer than the cap here, so the cap wins
    vocab = load_vocabulary(os.path.join(ds, "vocab.json")).index()
    label_ids = {vocab[w] for w in POS + NEG}
    for row in _stored(ds, "train").itertuples():  # head+tail: the label words at the end are kept
        ids = np.frombuffer(row.tokens, dtype="<i4")
        assert len(ids) == CAP and len(label_ids & set(ids.tolist())) >= 1


def test_max_len_auto_below_the_cap_and_flag(spark, tmp_path):
    docs = long_docs(120, seed=3)
    src = str(tmp_path / "d.jsonl")
    docs.to_json(src, orient="records", lines=True)
    out = str(tmp_path / "ds")
    parser = build_parser()
    for bad in ("0", "-3", "long"):  # one line, exit 2, before Spark
        with pytest.raises(UserInputError, match="--max-len"):
            options.build(IngestTextConfig, parser.parse_args(["ingest-text", "--input", src, "--output", out,
                                                               "--max-len", bad]))
    cfg = options.build(IngestTextConfig, parser.parse_args(
        ["ingest-text", "--input", src, "--output", out, "--max-len", "auto", "--min-count", "1", "--id-col", "id"]))
    assert cfg.text.needs_length_fit and cfg.text.max_len_cap == 1024 and cfg.text.truncation == "head"
    run_ingest_text(spark, cfg)
    man = json.load(open(os.path.join(out, "_sparkdl_manifest.json")))
    spec = TextSpec.from_dict(man["preprocess"])
    train_ids = set(_stored(out, "train")["id"])
    train_len = sorted(len(text_to_tokens(t, spec)) for t, i in zip(docs["text"], docs["id"], strict=True)
                       if i in train_ids)
    assert man["max_len"]["value"] == train_len[int(np.ceil(0.95 * len(train_len))) - 1] < 1024
    assert man["truncated"]["count"] > 0 and man["truncated"]["truncation"] == "head"


def test_fasttext_trains_on_two_ranks_and_scores_raw_text(spark, long_ds, tmp_path):
    docs, src, ds, _ = long_ds
    res = run_training(spark, TrainConfig(ds, str(tmp_path / "m"), model="fasttext", epochs=6, batch_size=16,
                                          num_proc=2, learning_rate=5e-3))
    assert res.num_proc == 2 and res.weights_digests[0] == res.weights_digests[1]
    assert res.test_accuracy is not None and res.test_accuracy >= 0.9 and res.val_accuracy >= 0.9
    card = json.load(open(os.path.join(str(tmp_path / "m"), "model_card.json")))
    assert card["name"] == "fasttext" and card["preprocess"]["truncation"] == "head-tail"
    # the executors load the model (its HashedBigrams layer) in safe mode and score raw text the same way
    sc = run_scoring(spark, ScoreConfig(str(tmp_path / "m"), os.path.join(ds, "test"), str(tmp_path / "s")))
    assert sc.accuracy == pytest.approx(res.test_accuracy, abs=1e-9)


def test_baseline_text_on_the_ingested_splits(spark, long_ds):
    _, _, ds, res = long_ds
    base = run_text_baseline(spark, BaselineTextConfig(ds, num_features=1024, reg_params=(0.01, 0.1)))
    assert (base.train_rows, base.val_rows, base.test_rows) == (res.counts["train"], res.counts["val"],
                                                                 res.counts["test"])
    assert base.test_accuracy is not None and base.test_accuracy >= 0.9 and base.val_accuracy >= 0.9
    assert set(base.val_by_reg) == set(base.test_by_reg) == {"0.01", "0.1"} and base.reg_param in (0.01, 0.1)
    assert base.test_by_reg[f"{base.reg_param:g}"] == base.test_accuracy
    r = run([CLI, "baseline-text", "--dataset", ds, "--num-features", "512", "--reg-params", "0.1",
             "--master", "local[2]", "--conf", "spark.ui.enabled=false"])
    assert r.returncode == 0, r.stderr[-2000:]
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("baseline-text (MLlib HashingTF(512) + IDF + LogisticRegression, regParam 0.1 ")
    assert float(line.split("test accuracy ")[1].split(";")[0]) >= 0.9


def test_baseline_text_user_mistakes(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / MANIFEST_FILE).write_text(json.dumps({"format": mf.FORMAT, "format_version": 1, "kind": "image"}))
    for args, needle in ((["--dataset", str(tmp_path / "nothing")], "nothing"),
                         (["--dataset", str(tmp_path), "--reg-params", "a,b"], "--reg-params"),
                         (["--dataset", str(images)], "needs a text dataset")):
        r = run([CLI, "baseline-text", *args, "--master", "local[1]"])
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        errors = [line for line in r.stderr.splitlines() if ": error:" in line]
        assert len(errors) == 1 and needle in errors[0], r.stderr[-1000:]
