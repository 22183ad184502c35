"""``--model auto`` on a text classification dataset: train every cheap candidate, publish the best on val.

No single text model is within a point of the best on every corpus (``benchmarks/NOTES.md``, change
30: textcnn wins on short snippets, fasttext on long articles), but the val split picks the better
one on both. So ``auto`` trains each of the modality's ``auto_candidates`` (text: textcnn, then
fasttext) through the ordinary single-model path, :func:`~sparkdl_pipe.driver.train.train_single`,
with the same options (ranks, epochs, batch size, learning rate, seed), one after the other, and
publishes the one with the highest val accuracy (a tie: the lower val loss, then the first listed).
The test split plays no part in the choice. Without a val split, for regression, for images, and
with ``--init-from``, ``auto`` is one default model, as before.

Where things are:

- while it runs, beside the output (like the single run's ``.NAME.train-work``):
  ``.NAME.auto-work/<candidate>/``, each candidate's complete model directory, written by
  ``train_single`` (its own staging, checkpoints and work directory inside ``.NAME.auto-work``);
- published, in one rename like any model: ``NAME/`` is the winner's model directory (``model.keras``,
  ``model_card.json``, ``report.md``, ``checkpoints/`` ...), and ``NAME/candidates/<other>/`` each
  other candidate's model directory without its ``checkpoints/``. The runners-up are kept because
  they are what the card's comparison is about and a user can score one (``score --model
  NAME/candidates/fasttext``) without training it again; their checkpoints are dropped because they
  are most of the bytes (every epoch's weights and optimizer state: 138 of textcnn's 146 MB on the
  news corpus, 333 of fasttext's 352 MB on Rotten Tomatoes), so ``auto`` publishes about one
  model's checkpoints, as a single run does. Scoring reads only ``model.keras`` and the files its
  card names, so the subfolder does not change how the model is used; a Spark ML save copies only
  the winner.

The winner's card (and each candidate's) gets a ``selection`` record: the rule, each candidate's val
accuracy and loss, test accuracy, epochs, seconds and where it was published, the winner and why;
the run report gets a "Model selection" section. ``--resume`` after a failure reuses the candidates
already finished with the same options and continues the interrupted one from its checkpoints;
``--resume --overwrite`` on a published ``auto`` model continues the winner from its checkpoints and
trains the others again from scratch for ``--epochs`` (theirs were not kept).

Runs on: driver.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from sparkdl_pipe import modalities, storage, tasks
from sparkdl_pipe import model_card as mc
from sparkdl_pipe.config import TrainConfig
from sparkdl_pipe.driver.report import REPORT_FILE, plot_names, render_markdown
from sparkdl_pipe.driver.resume import work_dir
from sparkdl_pipe.driver.tracking import TrackingConfig, track_training
from sparkdl_pipe.driver.train import TrainResult, train_single
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.executor.checkpoint import read_last
from sparkdl_pipe.manifest import load_dataset_info

log = logging.getLogger(__name__)

#: Under the published model directory: the candidates that were not chosen, one model directory each.
CANDIDATES_DIR = "candidates"
METRIC = "val_accuracy"
RULE = "the highest val accuracy; a tie: the lower val loss, then the first candidate listed"
#: Options that differ between the candidates or do not change what is learnt: not compared on --resume.
_NOT_COMPARED = ("model", "output", "overwrite", "resume", "rank_timeout", "transport")


def selection_candidates(cfg: TrainConfig) -> tuple[str, ...]:
    """The models ``cfg`` makes :func:`run_selection` train, or ``()`` when it trains one model.

    Runs on: driver. Candidates only for ``model="auto"`` on a classification dataset whose kind
    lists ``auto_candidates`` (text) and that has a val split to choose on, without ``--init-from``.
    """
    if cfg.model != "auto" or cfg.init_from:
        return ()
    info = load_dataset_info(cfg.dataset)
    modality = modalities.get(info.kind)
    if not modality.auto_candidates or tasks.get(cfg.task or info.task).name != "classification":
        return ()
    if info.count("val") == 0:
        log.warning("--model auto: dataset %s has no val split to choose a model on; training the default, %s, "
                    "alone", cfg.dataset, modality.default_model)
        return ()
    return tuple(modality.auto_candidates)


def auto_work_dir(output_url: str) -> str:
    """Where the candidates are trained before the winner is published (a URL beside the output).

    >>> auto_work_dir("file:///models/m")
    'file:///models/.m.auto-work'
    """
    head, _, name = storage.to_url(output_url).rstrip("/").rpartition("/")
    return f"{head}/.{name}.auto-work"


def _card(model_dir: str) -> dict | None:
    u = storage.join(model_dir, mc.CARD_FILE)
    return storage.read_json(u) if storage.exists(u) else None


def _same_run(card: dict, cfg: TrainConfig, fingerprint: str) -> bool:
    """Whether a finished candidate was trained on this dataset with these options (reused on --resume)."""
    tr = card.get("training", {})
    want = {k: v for k, v in cfg.to_dict().items()
            if k not in _NOT_COMPARED and not (k == "num_proc" and v is None)}
    return card.get("dataset", {}).get("fingerprint") == fingerprint and all(tr.get(k) == v for k, v in want.items())


def _has_checkpoint(cand: str) -> bool:
    return any(read_last(storage.join(d, "checkpoints")) is not None for d in (work_dir(cand), cand))


def _seed_from_published(out: str, cand: str, name: str) -> bool:
    """Copy candidate ``name``'s directory out of a published ``auto`` model into ``cand``, so that
    ``--resume`` trains it further from its checkpoints. True when there was one to copy."""
    card = _card(out)
    sel = (card or {}).get("selection") or {}
    src = out if sel.get("winner") == name else storage.join(out, CANDIDATES_DIR, name)
    if read_last(storage.join(src, "checkpoints")) is None:  # a runner-up: published without checkpoints
        return False
    storage.remove(cand)
    storage.copy(src, cand)
    storage.remove(storage.join(cand, CANDIDATES_DIR))  # the winner's copy: its siblings are not its own
    return read_last(storage.join(cand, "checkpoints")) is not None


def _plan(cfg: TrainConfig, out: str, work: str, candidates: tuple[str, ...], fingerprint: str) -> dict[str, str]:
    """Per candidate: ``reuse`` (finished with the same options), ``resume`` (checkpoints) or ``train``."""
    if not cfg.resume:
        if storage.exists(work):
            log.warning("starting from scratch: the candidates in %s (a previous run) are discarded; use --resume "
                        "to continue them", work)
        storage.remove(work)
        return {n: "train" for n in candidates}
    plan = {}
    for name in candidates:
        cand = storage.join(work, name)
        card = _card(cand)
        if card is not None and _same_run(card, dataclasses.replace(cfg, model=name), fingerprint):
            plan[name] = "reuse"
        elif _has_checkpoint(cand) or (not storage.exists(cand) and _seed_from_published(out, cand, name)):
            plan[name] = "resume"
        else:
            plan[name] = "train"
    if set(plan.values()) == {"train"}:
        raise UserInputError("--resume: no candidate of --model auto to continue",
                             fix=f"None in {work} or {out}; run without --resume to start from scratch")
    return plan


def _choose(cards: dict[str, dict], candidates: tuple[str, ...]) -> str:
    def key(name: str) -> tuple[float, float, int]:
        fin = cards[name]["final"]
        loss = fin.get("val_loss")
        return (fin.get(METRIC) or 0.0, -(loss if loss is not None else float("inf")), -candidates.index(name))

    return max(candidates, key=key)


def _selection(cards: dict[str, dict], candidates: tuple[str, ...], winner: str, plan: dict[str, str],
               t0: float) -> dict:
    rows = [{"name": n, "val_accuracy": cards[n]["final"].get(METRIC), "val_loss": cards[n]["final"].get("val_loss"),
             "test_accuracy": cards[n]["final"].get("test_accuracy"), "epochs": cards[n]["training"]["epochs"],
             "seconds": round(float(cards[n]["training"]["seconds"]), 1), "model_id": cards[n]["model_id"],
             "published_as": "." if n == winner else f"{CANDIDATES_DIR}/{n}", "trained": plan[n]}
            for n in candidates]
    w = next(r for r in rows if r["name"] == winner)
    others = ", ".join(f"{r['name']} {r['val_accuracy']:.4f}" for r in rows if r["name"] != winner)
    tie = any(r["val_accuracy"] == w["val_accuracy"] for r in rows if r["name"] != winner)
    reason = (f"auto chose {winner}: val accuracy {w['val_accuracy']:.4f} vs {others}"
              + (" (a tie on val accuracy: decided by val loss, then the candidates' order)" if tie else ""))
    return {"requested": "auto", "metric": METRIC, "rule": RULE, "winner": winner, "reason": reason,
            "candidates": rows, "seconds": round(time.time() - t0, 1)}


def _with_selection(card: dict, selection: dict) -> dict:
    return {**card, "selection": selection, "training": {**card["training"], "model_requested": "auto"}}


def run_selection(spark, cfg: TrainConfig, candidates: tuple[str, ...],
                  tracking: TrackingConfig | None = None) -> TrainResult:
    """Train each of ``candidates`` with ``cfg``'s options and publish the best on val to ``cfg.output``.

    Runs on: driver. Called by :func:`~sparkdl_pipe.driver.train.run_training` for ``model="auto"``
    when :func:`selection_candidates` lists candidates; returns the winner's result, with
    ``selection`` set and ``seconds`` the whole run's.
    """
    t0 = time.time()
    info = load_dataset_info(cfg.dataset)
    out = storage.to_url(cfg.output)
    storage.filesystem(out)  # an unsupported scheme is one line here, before any work
    storage.prepare_output(out, cfg.overwrite)  # an existing output without --overwrite: refused before any work
    work = auto_work_dir(out)
    plan = _plan(cfg, out, work, candidates, info.fingerprint)
    cards: dict[str, dict] = {}
    results: dict[str, TrainResult] = {}
    for i, name in enumerate(candidates, 1):
        cand = storage.join(work, name)
        if plan[name] == "reuse":
            log.info("--model auto: candidate %d/%d, %s, already trained with these options in %s; reused",
                     i, len(candidates), name, cand)
        else:
            log.info("--model auto: %s candidate %d/%d, %s", "resuming" if plan[name] == "resume" else "training",
                     i, len(candidates), name)
            results[name] = train_single(spark, dataclasses.replace(cfg, model=name, output=cand, overwrite=True,
                                                                    resume=plan[name] == "resume"))
        cards[name] = _card(cand) or {}
    winner = _choose(cards, candidates)
    selection = _selection(cards, candidates, winner, plan, t0)
    log.info("--model auto: %s", selection["reason"])
    with storage.staged_output(out, cfg.overwrite) as staging:
        for name in candidates:
            src = storage.join(work, name)
            dst = staging if name == winner else storage.join(staging, CANDIDATES_DIR, name)
            for entry in storage.list_names(src):
                if name == winner or entry != "checkpoints":  # a runner-up's go with the work directory
                    storage.move(storage.join(src, entry), storage.join(dst, entry))
            card = _with_selection(cards[name], selection)
            storage.write_json(storage.join(dst, mc.CARD_FILE), card)
            _write_text(storage.join(dst, REPORT_FILE), render_markdown(card, plot_names(card)))
    storage.remove(work)
    if tracking is not None:
        track_training(tracking, out)
    card = _with_selection(cards[winner], selection)
    fin, tr = card["final"], card["training"]
    digests = results[winner].weights_digests if winner in results else [card["weights_digest"]] * tr["num_proc"]
    res = TrainResult(out, card["model_id"], tr["num_proc"], tr["steps_per_epoch"], card["history"],
                      fin.get("val_accuracy"), fin.get("test_accuracy"), digests, time.time() - t0, tr["transport"],
                      fin.get("val_loss"), fin.get("test_loss"),
                      {k: v for k, v in fin.items() if k not in ("test_confusion", "reconstruction_error")}, selection)
    log.info(res.summary())
    return res


def _write_text(url: str, text: str) -> None:
    fs, p = storage.filesystem(url)
    with fs.open_output_stream(p) as f:
        f.write(text.encode("utf-8"))
