"""Seeing the work: rank-0 progress relayed to the driver, TensorBoard scalars, the run report with
plots, MLflow tracking read back with the MLflow client. One real 2-rank training run."""

import glob
import json
import os

import numpy as np
import pytest

from sparkdl_pipe.config import IngestImagesConfig, TrainConfig
from sparkdl_pipe.driver.ingest import run_ingest_images
from sparkdl_pipe.driver.progress import ProgressPrinter, ProgressServer, StageProgress
from sparkdl_pipe.driver.report import per_class_metrics
from sparkdl_pipe.driver.tracking import TrackingConfig
from sparkdl_pipe.driver.train import run_training
from sparkdl_pipe.executor.callbacks import ProgressSink, parse_progress_line, progress_line
from sparkdl_pipe.preprocess.spec import ImageSpec
from tests.conftest import make_image_folder

EPOCHS = 3


@pytest.fixture(scope="module")
def tracked_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("obs")
    raw = str(root / "raw")
    make_image_folder(raw, labels=("cat", "dog", "owl"), per_label=40, size=(12, 12))
    ds = str(root / "ds")
    lines: list[str] = []

    class Sink:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    # polled often: the write job of 120 small images can start and end between two polls 0.2 s apart
    with StageProgress(spark, "ingest", interval=0.05, out=Sink()) as sp:  # type: ignore[arg-type]
        run_ingest_images(spark, IngestImagesConfig(raw, ds, ImageSpec(12, 12, 3)))
    out = str(root / "model")
    res = run_training(spark, TrainConfig(ds, out, model="mlp", epochs=EPOCHS, batch_size=8, num_proc=2),
                       tracking=TrackingConfig(experiment="obs-test"))
    return out, res, sp.lines


def test_progress_lines_round_trip_and_printer_prints_each_epoch():
    rec = {"event": "epoch", "epoch": 2, "epochs": 5, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6,
           "val_accuracy": 0.75, "samples_per_s": 1234.0, "seconds": 1.5, "eta_s": 4.5}
    assert parse_progress_line("[0]<stdout>:" + progress_line(rec)) == rec
    assert parse_progress_line("some other rank output") is None

    class Out:
        text = ""

        def write(self, s):
            Out.text += s

        def flush(self):
            pass

    relay = ProgressPrinter(out=Out())  # type: ignore[arg-type]
    wire = "noise\n[0]<stdout>:" + progress_line(rec) + "\n[1]<stdout>:more noise\n"
    for i in range(0, len(wire), 7):  # Horovod writes arbitrary chunks
        relay.write(wire[i:i + 7])
    assert relay.epochs() == [rec]
    assert "epoch 2/5: loss 0.5000 acc 0.8000 | val loss 0.6000 acc 0.7500 | 1234 samples/s" in Out.text
    assert ("~4s left" in Out.text or "~5s left" in Out.text) and "noise" not in Out.text


def test_progress_reaches_the_driver_line_by_line_over_the_socket():
    import threading

    lines: list[str] = []
    got = threading.Event()

    class Out:
        def write(self, s):
            lines.append(s)
            got.set()

        def flush(self):
            pass

    rec = {"event": "epoch", "epoch": 1, "epochs": 2, "loss": 1.0, "accuracy": 0.5, "samples_per_s": 10.0,
           "seconds": 2.0, "eta_s": 2.0}
    with ProgressServer("127.0.0.1", out=Out()) as srv:  # type: ignore[arg-type]
        sink = ProgressSink(srv.address)
        sink.send(rec)
        # delivered while the connection is still open (not buffered until the rank exits)
        assert got.wait(timeout=30), "progress line not delivered while the sender was still connected"
        sink.send({**rec, "epoch": 2, "eta_s": 0.0})
        sink.close()
    assert [r["epoch"] for r in srv.epochs()] == [1, 2]
    assert lines[0].startswith("[train] epoch 1/2: loss 1.0000 acc 0.5000 | 10 samples/s")
    # an unreachable driver is not fatal: the rank falls back to its stdout
    dead = ProgressSink(("127.0.0.1", 1), timeout=2)
    dead.send(rec)


def test_stage_progress_reported_during_ingest(tracked_run):
    _, _, lines = tracked_run
    assert lines and all(ln.startswith("[ingest] stage ") and " tasks" in ln for ln in lines)


def test_tensorboard_scalars_written_by_rank0(tracked_run):
    out, res, _ = tracked_run
    files = glob.glob(os.path.join(out, "tensorboard", "events.out.tfevents.*"))
    assert len(files) == 1  # rank 0 only
    from tensorflow.core.util import event_pb2
    from tensorflow.python.lib.io import tf_record

    seen: dict[str, dict[int, float]] = {}
    for raw in tf_record.tf_record_iterator(files[0]):
        ev = event_pb2.Event.FromString(raw)
        for v in ev.summary.value:
            assert v.metadata.plugin_data.plugin_name == "scalars"
            val = float(np.frombuffer(v.tensor.tensor_content, np.float32)[0]) if v.tensor.tensor_content \
                else float(v.tensor.float_val[0])
            seen.setdefault(v.tag, {})[int(ev.step)] = val
    assert set(seen["train/loss"]) == set(range(1, EPOCHS + 1))
    for h in res.history:
        assert seen["train/loss"][h["epoch"]] == pytest.approx(h["loss"], rel=1e-5)
        assert seen["val/accuracy"][h["epoch"]] == pytest.approx(h["val_accuracy"], rel=1e-5)


def test_run_report_plots_and_numbers_match_card(tracked_run):
    out, _, _ = tracked_run
    from PIL import Image

    card = json.load(open(os.path.join(out, "model_card.json")))
    report = open(os.path.join(out, "report.md")).read()
    for name in ("curves", "confusion", "per_class"):
        png = os.path.join(out, "plots", f"{name}.png")
        assert f"plots/{name}.png" in report
        with Image.open(png) as im:
            im.load()
            assert im.format == "PNG" and im.size[0] >= 400 and im.size[1] >= 300
            assert np.asarray(im.convert("L")).std() > 5  # not a blank canvas
    assert f"| test accuracy | {card['final']['test_accuracy']:.4f} |" in report
    assert f"| validation accuracy | {card['final']['val_accuracy']:.4f} |" in report
    for h in card["history"]:
        assert f"| {h['epoch']} | {h['loss']:.4f} | {h['accuracy']:.4f} |" in report
    m = per_class_metrics(card["final"]["test_confusion"], card["labels"])
    assert sum(m.support) == card["final"]["test_rows"]
    for i, lab in enumerate(card["labels"]):
        p = "n/a" if m.precision[i] is None else f"{m.precision[i]:.4f}"
        r = "n/a" if m.recall[i] is None else f"{m.recall[i]:.4f}"
        assert f"| {lab} | {p} | {r} | {m.support[i]} |" in report


def test_per_class_metrics():
    m = per_class_metrics([[3, 1, 0], [0, 2, 0], [0, 0, 0]], ["a", "b", "c"])
    assert m.precision == [1.0, pytest.approx(2 / 3), None] and m.recall == [0.75, 1.0, None]
    assert m.support == [4, 2, 0]


def test_mlflow_run_read_back(tracked_run):
    out, res, _ = tracked_run
    from mlflow.tracking import MlflowClient

    card = json.load(open(os.path.join(out, "model_card.json")))
    client = MlflowClient(tracking_uri="file://" + os.path.join(out, "mlruns"))
    exp = client.get_experiment_by_name("obs-test")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["sparkdl_pipe.dataset_fingerprint"] == card["dataset"]["fingerprint"]
    assert run.data.tags["sparkdl_pipe.model_id"] == res.model_id
    assert run.data.params["epochs"] == str(EPOCHS) and run.data.params["num_proc"] == "2"
    assert run.data.params["model"] == "mlp" and run.data.params["input_shape"] == "12x12x3"
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in sorted(loss, key=lambda m: m.step)] == list(range(1, EPOCHS + 1))
    assert [m.value for m in sorted(loss, key=lambda m: m.step)] == pytest.approx([h["loss"] for h in res.history])
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(res.test_accuracy)
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert arts == {"model/model.keras", "model/model_card.json"}
    local = client.download_artifacts(run.info.run_id, "model/model_card.json", str(os.path.join(out, "..")))
    assert json.load(open(local))["model_id"] == res.model_id
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} >= {"report/report.md", "report/plots"}
