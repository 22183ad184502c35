"""--model auto's bookkeeping without Spark: which candidate is reused, resumed or trained, and the choice."""

import json
import os
import shutil

import pytest

from sparkdl_pipe.config import TrainConfig
from sparkdl_pipe.driver import auto_select as ax
from sparkdl_pipe.errors import UserInputError

FP = "fp1"


def _model_dir(path, name, cfg: TrainConfig, epoch: int, selection=None, val=0.8) -> None:
    """A finished candidate as train_single leaves it: card (training = the config) + checkpoints."""
    os.makedirs(path / "checkpoints", exist_ok=True)
    (path / "checkpoints" / "last.json").write_text(json.dumps({"epoch": epoch, "model": name}))
    card = {"name": name, "dataset": {"fingerprint": FP}, "final": {"val_accuracy": val, "val_loss": 0.5},
            "training": {**cfg.to_dict(), "model": name, "num_proc": 2, "transport": "mpi"}}
    if selection:
        card["selection"] = selection
    (path / "model_card.json").write_text(json.dumps(card))
    (path / "model.keras").write_text(name)


def test_plan_reuses_finished_resumes_interrupted_and_starts_fresh_without_resume(tmp_path):
    out = tmp_path / "m"
    work = tmp_path / ".m.auto-work"
    cfg = TrainConfig("ds", str(out), epochs=3, num_proc=None, resume=True)
    _model_dir(work / "textcnn", "textcnn", TrainConfig("ds", "x", model="textcnn", epochs=3), 3)
    ck = work / ".fasttext.train-work" / "checkpoints"  # fasttext was killed after its first epoch
    ck.mkdir(parents=True)
    (ck / "last.json").write_text(json.dumps({"epoch": 1}))
    cands = ("textcnn", "fasttext")
    assert ax._plan(cfg, ax.storage.to_url(str(out)), ax.storage.to_url(str(work)), cands, FP) == \
        {"textcnn": "reuse", "fasttext": "resume"}
    more = TrainConfig("ds", str(out), epochs=5, resume=True)  # more epochs: textcnn continues, not reused
    assert ax._plan(more, ax.storage.to_url(str(out)), ax.storage.to_url(str(work)), cands, FP)["textcnn"] == "resume"
    assert ax._plan(cfg, ax.storage.to_url(str(out)), ax.storage.to_url(str(work)), cands, "other")["textcnn"] \
        == "resume"  # another dataset: never reused (the checkpoint check refuses it in train_single)
    fresh = TrainConfig("ds", str(out), epochs=3)
    assert ax._plan(fresh, ax.storage.to_url(str(out)), ax.storage.to_url(str(work)), cands, FP) == \
        {"textcnn": "train", "fasttext": "train"}
    assert not work.exists()  # without --resume the old candidates are discarded


def test_resume_on_a_published_auto_model_continues_the_winner(tmp_path):
    out = tmp_path / "m"
    tc = TrainConfig("ds", "x", model="textcnn", epochs=3)
    sel = {"winner": "fasttext"}
    _model_dir(out, "fasttext", tc, 3, sel)
    _model_dir(out / "candidates" / "textcnn", "textcnn", tc, 3, sel)
    shutil.rmtree(out / "candidates" / "textcnn" / "checkpoints")  # a runner-up is published without them
    cfg = TrainConfig("ds", str(out), epochs=6, resume=True, overwrite=True)
    work = ax.auto_work_dir(ax.storage.to_url(str(out)))
    plan = ax._plan(cfg, ax.storage.to_url(str(out)), work, ("textcnn", "fasttext"), FP)
    assert plan == {"textcnn": "train", "fasttext": "resume"}  # the winner continues, the other starts again
    seeded = tmp_path / ".m.auto-work"
    assert sorted(os.listdir(seeded)) == ["fasttext"]
    assert sorted(os.listdir(seeded / "fasttext")) == ["checkpoints", "model.keras", "model_card.json"]  # no candidates/
    with pytest.raises(UserInputError, match="no candidate of --model auto to continue"):
        ax._plan(cfg, ax.storage.to_url(str(tmp_path / "none")), ax.storage.to_url(str(tmp_path / ".none.auto-work")),
                 ("textcnn", "fasttext"), FP)


def test_choice_is_val_accuracy_then_val_loss_then_order():
    def card(acc, loss):
        return {"final": {"val_accuracy": acc, "val_loss": loss}}

    cands = ("textcnn", "fasttext")
    assert ax._choose({"textcnn": card(0.81, 0.4), "fasttext": card(0.85, 0.6)}, cands) == "fasttext"
    assert ax._choose({"textcnn": card(0.85, 0.5), "fasttext": card(0.85, 0.4)}, cands) == "fasttext"
    assert ax._choose({"textcnn": card(0.85, 0.4), "fasttext": card(0.85, 0.4)}, cands) == "textcnn"
