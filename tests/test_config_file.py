"""YAML config files for every subcommand: file first, flags override, resolved config printed and
saved beside outputs, bad files are one-line user errors (exit 2)."""

import os
import subprocess
import sys

import pytest
import yaml

from sparkdl_pipe import config_file
from sparkdl_pipe.cli import build_parser, main
from sparkdl_pipe.errors import UserInputError

CLI = os.path.join(os.path.dirname(sys.executable), "sparkdl-pipe")


def _parse(argv):
    parser = build_parser()
    config_file.add_config_options(parser)
    return config_file.parse_args(parser, argv)


def _write(tmp_path, doc, name="c.yaml"):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(p)


def test_every_subcommand_takes_config_and_print_config():
    parser = build_parser()
    config_file.add_config_options(parser)
    subs = config_file.subparsers(parser)
    assert {"ingest-images", "train", "score", "demo"} <= set(subs)
    for sub in subs.values():
        dests = {a.dest for a in sub._actions}
        assert {"config", "print_config"} <= dests


def test_file_values_then_flags_override(tmp_path):
    cfg = _write(tmp_path, {"dataset": "ds/", "output": "m/", "epochs": 3, "batch-size": 16,
                            "learning_rate": 0.01, "conf": {"spark.driver.memory": "2g"}, "overwrite": True})
    a = _parse(["train", "--config", cfg])
    assert (a.dataset, a.output, a.epochs, a.batch_size, a.learning_rate, a.overwrite) == \
        ("ds/", "m/", 3, 16, 0.01, True)
    assert a.conf == ["spark.driver.memory=2g"]
    b = _parse(["train", "--config", cfg, "--epochs", "7", "--output", "other/"])
    assert (b.epochs, b.output, b.batch_size) == (7, "other/", 16)
    # list-valued and typed options are converted the way argparse converts flags
    c = _parse(["ingest-images", "--config", _write(tmp_path, {"input": "i", "output": "o", "image_size": 64,
                                                               "row_group_mb": "0.5"}, "i.yaml")])
    assert c.image_size == [64] and c.row_group_mb == 0.5
    # --conf (a Spark setting) is not an abbreviation of --config, with or without a file
    d = _parse(["train", "--dataset", "d", "--output", "o", "--conf", "spark.ui.enabled=false"])
    assert d.conf == ["spark.ui.enabled=false"] and d.config is None
    e = _parse(["train", "--config", cfg, "--conf", "spark.ui.enabled=false"])
    assert e.conf == ["spark.driver.memory=2g", "spark.ui.enabled=false"] and e.epochs == 3


@pytest.mark.parametrize("doc,needle", [
    ({"dataset": "d", "output": "o", "epochz": 3}, "unknown option 'epochz'"),
    ({"dataset": "d", "output": "o", "epochs": "three"}, "epochs: expected an int"),
    ({"dataset": "d", "output": "o", "overwrite": "yes please"}, "overwrite: expected true or false"),
    ({"dataset": "d", "output": "o", "log_level": "LOUD"}, "log_level: expected one of"),
    ("- a\n- b\n", "expected a mapping"),
    ("epochs: [1, 2\n", "is not valid YAML"),
])
def test_bad_files_are_user_errors(tmp_path, doc, needle):
    with pytest.raises(UserInputError, match=needle):
        _parse(["train", "--config", _write(tmp_path, doc)])


def test_cli_print_config_and_one_line_errors(tmp_path, capsys):
    cfg = _write(tmp_path, {"dataset": "ds/", "output": "m/", "epochs": 3})
    assert main(["train", "--config", cfg, "--epochs", "4", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["epochs"] == 4 and printed["dataset"] == "ds/" and "config" not in printed
    # what --print-config prints is itself a valid config file
    again = _write(tmp_path, {k: v for k, v in printed.items()}, "again.yaml")
    assert vars(_parse(["train", "--config", again])) | {"config": None} == vars(_parse(
        ["train", "--config", cfg, "--epochs", "4"])) | {"config": None}
    r = subprocess.run([CLI, "score", "--config", _write(tmp_path, {"modle": "m"}, "bad.yaml")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "unknown option 'modle'" in r.stderr
    r = subprocess.run([CLI, "train", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "missing.yaml does not exist" in r.stderr


def test_resolved_config_saved_beside_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = _parse(["score", "--model", "m", "--input", "i", "--output", str(out), "--batch-size", "5"])
    path = config_file.save_resolved(args, str(out))
    assert path is not None and os.path.basename(path) == config_file.RESOLVED_FILE
    saved = yaml.safe_load(open(os.path.join(out, config_file.RESOLVED_FILE)))
    assert saved["batch_size"] == 5 and saved["model"] == "m"
    assert config_file.save_resolved(args, str(tmp_path / "never-written")) is None
