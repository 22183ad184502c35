"""Optional MLflow tracking of a training run: parameters, per-epoch metrics, model + card as artifacts.

Runs on: driver, after the model directory is published (the logged artifacts are the published
files). Uses ``mlflow-skinny``. Without a tracking URI the run goes to a local file store,
``<model dir>/mlruns``. MLflow 3 refuses the file store unless ``MLFLOW_ALLOW_FILE_STORE=true``
(its database store needs SQLAlchemy, which mlflow-skinny does not bring); that variable is set
here, for this process only, when the chosen URI is a file store.

>>> track_training(TrackingConfig(), res)  # doctest: +SKIP
'3f2c...'  # the MLflow run id
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from urllib.parse import urlparse

from sparkdl_pipe import model_card as mc
from sparkdl_pipe import storage
from sparkdl_pipe.errors import UserInputError

log = logging.getLogger(__name__)

DEFAULT_STORE = "mlruns"


@dataclass(frozen=True)
class TrackingConfig:
    """Where and under which experiment to record a run. ``uri=None``: ``<model dir>/mlruns``."""

    uri: str | None = None
    experiment: str = "sparkdl_pipe"
    run_name: str | None = None

    def __post_init__(self) -> None:
        if not self.experiment:
            raise UserInputError("--mlflow-experiment", "a non-empty name", self.experiment)

    def resolved_uri(self, model_dir: str) -> str:
        return self.uri or storage.to_url(storage.join(storage.to_url(model_dir), DEFAULT_STORE))


def _flat_params(card: dict) -> dict[str, str]:
    tr = card["training"]
    keep = ("model", "epochs", "batch_size", "learning_rate", "warmup_epochs", "num_proc", "steps_per_epoch",
            "threads_per_rank", "shuffle_buffer", "seed", "effective_learning_rate")
    params = {k: str(tr[k]) for k in keep if k in tr}
    spec = card["preprocess"]
    params.update({"input_shape": "x".join(str(d) for d in card["input_shape"]),
                   "num_classes": str(len(card["labels"])), "dataset": card["dataset"]["url"],
                   "preprocess_fingerprint": card["preprocess_fingerprint"],
                   **{f"preprocess.{k}": str(v) for k, v in spec.items()}})
    return params


def track_training(cfg: TrackingConfig, model_dir: str) -> str:
    """Record the published model in ``model_dir`` as one MLflow run; returns the run id.

    Runs on: driver.
    """
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as e:  # pragma: no cover - mlflow-skinny is a pinned dependency
        raise UserInputError("--mlflow", "the mlflow-skinny package installed", None,
                             "pip install -c constraints.txt mlflow-skinny") from e
    info = mc.load_model_info(model_dir)
    card = info.card
    uri = cfg.resolved_uri(model_dir)
    if urlparse(uri).scheme in ("", "file"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(cfg.experiment)
    tags = {"sparkdl_pipe.dataset_fingerprint": card["dataset"]["fingerprint"],
            "sparkdl_pipe.model_id": card["model_id"], "sparkdl_pipe.model_dir": info.url,
            "sparkdl_pipe.weights_digest": card["weights_digest"]}
    run = client.create_run(exp_id, run_name=cfg.run_name or f"{card['name']}-{card['model_id']}", tags=tags)
    rid = run.info.run_id
    status = "FAILED"
    tmp = None
    try:
        from mlflow.entities import Metric, Param

        params = [Param(k, v) for k, v in _flat_params(card).items()]
        metrics = []
        ts = int(run.info.start_time)
        for h in card["history"]:
            for k in ("loss", "accuracy", "val_loss", "val_accuracy", "val_mae", "val_rmse", "val_r2", "samples_per_s",
                      "learning_rate"):
                if h.get(k) is not None:
                    metrics.append(Metric(k, float(h[k]), ts, int(h["epoch"])))
        for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "test_mae", "test_rmse", "test_r2"):
            if card["final"].get(k) is not None:
                metrics.append(Metric(f"final_{k}", float(card["final"][k]), ts, 0))
        client.log_batch(rid, metrics=metrics, params=params)
        from sparkdl_pipe.driver.report import PLOTS_DIR, REPORT_FILE

        if storage.is_local(info.url):
            local = storage.local_path(info.url)
        else:  # MLflow logs local files: fetch what is logged from the model's URL first
            tmp = local = tempfile.mkdtemp(prefix="sparkdl_pipe-mlflow-")
            for name in (mc.MODEL_FILE, mc.CARD_FILE, REPORT_FILE, PLOTS_DIR):
                if storage.exists(storage.join(info.url, name)):
                    storage.download(storage.join(info.url, name), os.path.join(local, name))
        client.log_artifact(rid, os.path.join(local, info.card["model_file"]), "model")
        client.log_artifact(rid, os.path.join(local, mc.CARD_FILE), "model")
        if os.path.exists(os.path.join(local, REPORT_FILE)):
            client.log_artifact(rid, os.path.join(local, REPORT_FILE), "report")
            client.log_artifacts(rid, os.path.join(local, PLOTS_DIR), f"report/{PLOTS_DIR}")
        status = "FINISHED"
    finally:
        client.set_terminated(rid, status)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("MLflow run %s in experiment %r at %s", rid, cfg.experiment, uri)
    return rid
