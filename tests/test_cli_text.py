"""ingest-text from the command line and as a spark-submit job (real subprocesses)."""

import json
import os

from tests.test_cli_jobs import BIN, CLI, run
from tests.text_corpus import make_docs, write_table


def test_ingest_text_help_and_user_mistakes(tmp_path):
    r = run([CLI, "ingest-text", "--help"])
    assert r.returncode == 0 and "example" in r.stdout and "--max-len" in r.stdout and "--overwrite" in r.stdout
    src = str(tmp_path / "in.csv")
    write_table(make_docs(10), src, "csv")
    for args, needle in ((["--input", src, "--output", str(tmp_path / "o"), "--text-col", "body"], "no column 'body'"),
                         (["--input", src, "--output", str(tmp_path / "o"), "--max-len", "0"], "--max-len"),
                         (["--input", "/nonexistent/x.csv", "--output", str(tmp_path / "o")], "does not exist")):
        r = run([CLI, "ingest-text", *args, "--master", "local[1]"])
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        errors = [line for line in r.stderr.splitlines() if ": error:" in line]
        assert len(errors) == 1 and needle in errors[0]


def test_spark_submit_ingest_text_job(tmp_path):
    src = str(tmp_path / "in.tsv")
    write_table(make_docs(60), src, "tsv")
    out = str(tmp_path / "ds")
    submit = [os.path.join(BIN, "spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false"]
    r = run([*submit, "jobs/ingest_text.py", "--input", src, "--output", out, "--max-len", "8", "--id-col", "id"])
    assert r.returncode == 0, (r.stdout[-1000:], [ln for ln in r.stderr.splitlines() if "error" in ln.lower()][-5:])
    assert "ingested 64 records" in r.stdout and "documents truncated" in r.stdout
    man = json.load(open(os.path.join(out, "_sparkdl_manifest.json")))
    assert man["input_records"] == 64 and man["rejects"]["count"] == 4 and man["preprocess"]["max_len"] == 8
