"""The one pipeline with kinds of data as plug-ins: a toy third kind (.npy arrays, tests/toy_npy.py)
goes ingest -> 2-rank Horovod training -> scoring with one registration line; the structure has
no import circle and no kind branches in the pipelines."""

import ast
import json
import os
import pathlib

import numpy as np
import pytest

from sparkdl_pipe import modalities
from sparkdl_pipe.config import IngestConfig, ScoreConfig, TrainConfig
from sparkdl_pipe.driver.ingest import run_ingest
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.driver.train import run_training
from tests.toy_npy import NpySpec

PKG = pathlib.Path(__file__).resolve().parent.parent / "sparkdl_pipe"


def _write_arrays(root: pathlib.Path, n: int, seed: int) -> None:
    """Two classes of 16-value vectors (means -1 and +1), plus a corrupt file and a wrong shape."""
    rng = np.random.default_rng(seed)
    for label, mean in (("low", -1.0), ("high", 1.0)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(root / label / f"{label}-{i:03d}.npy", rng.normal(mean, 0.7, 16).astype("f4"))
    (root / "low" / "broken.npy").write_bytes(b"not an array")
    np.save(root / "high" / "short.npy", np.zeros(3, dtype="f4"))


def test_a_third_kind_of_data_runs_end_to_end(spark, tmp_path):
    modalities.register("npy", "tests.toy_npy:NPY")  # the one registration line
    raw = tmp_path / "arrays"
    _write_arrays(raw, 150, seed=1)
    ds = str(tmp_path / "ds")
    ing = run_ingest(spark, IngestConfig(str(raw), ds, NpySpec(16)))
    assert ing.input_records == 302 == sum(ing.counts.values()) + ing.rejected
    assert ing.rejects_by_reason == {"undecodable_array": 1, "wrong_shape": 1}
    assert ing.labels == ["high", "low"]
    man = json.load(open(os.path.join(ds, "_sparkdl_manifest.json")))
    assert man["kind"] == "npy" and man["schema"]["fields"][0] == {
        "name": "array", "dtype": "float32", "shape": [16], "encoding": "raw-bytes-little-endian-row-major"}

    res = run_training(spark, TrainConfig(ds, str(tmp_path / "m"), epochs=4, batch_size=16, num_proc=2,
                                          learning_rate=5e-3))
    assert res.weights_digests[0] == res.weights_digests[1]
    assert res.test_accuracy is not None and res.test_accuracy >= 0.9

    new = tmp_path / "new"
    _write_arrays(new, 20, seed=2)
    sc = run_scoring(spark, ScoreConfig(str(tmp_path / "m"), str(new), str(tmp_path / "s")))
    assert sc.input_rows == 42 == sc.scored + sc.rejected and sc.rejected == 2
    assert sc.labelled_rows == 40 and sc.accuracy >= 0.9
    split = run_scoring(spark, ScoreConfig(str(tmp_path / "m"), os.path.join(ds, "test"), str(tmp_path / "s2")))
    assert split.accuracy == pytest.approx(res.test_accuracy, abs=1e-9)


def _imports(path: pathlib.Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports when it is imported (module level, not inside functions)."""
    mods: set[str] = set()
    top = [n for n in ast.parse(path.read_text()).body]
    for node in [x for n in top for x in ([n] if not isinstance(n, (ast.If, ast.Try)) else ast.walk(n))]:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sparkdl_pipe"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            mods.update(subs or {node.module})
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names if a.name.startswith("sparkdl_pipe"))
    return mods


def _module(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_circle_no_private_sibling_imports_no_kind_branches():
    files = sorted(PKG.rglob("*.py"))
    known = {_module(f) for f in files}
    graph = {_module(f): _imports(f, known) - {_module(f)} for f in files}
    # no module-level cycle between the pipeline packages (driver <-> executor is one way)
    for mod, deps in graph.items():
        if mod.startswith("sparkdl_pipe.executor"):
            assert not [d for d in deps if d.startswith("sparkdl_pipe.driver")], mod
    seen: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        if seen.get(m) == 1:
            raise AssertionError("import circle: " + " -> ".join([*stack, m]))
        if seen.get(m) == 2 or m not in graph:
            return
        seen[m] = 1
        for d in graph[m]:
            visit(d, [*stack, m])
        seen[m] = 2

    for m in graph:
        visit(m, [])
    for f in files:
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sparkdl_pipe"):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"
                           and f"{node.module}.{a.name}" not in known]  # a private module is not a name
                assert not private, (f, node.module, private)
    for sub in ("driver", "executor"):
        for f in (PKG / sub).glob("*.py"):
            src = f.read_text()
            names = {n.id for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Name)}
            assert not names & {"TextSpec", "ImageSpec"} or f.name == "demo.py", f  # the demo picks its data
            assert 'kind == "text"' not in src and 'kind == "image"' not in src, f
    for f in files:
        assert '"""' in f.read_text()[:400] or f.name == "__init__.py", f"{f} says what it owns"
