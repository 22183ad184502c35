# One image for every service of docker-compose.yml (Spark master, workers, client): the pinned
# stack installed by the same scripts/install.sh as `make install`, Horovod compiled in the build.
#   CPU:  scripts/docker-image.sh   (= make image; BuildKit, the CA bundle as a build secret, and the
#         Debian base of scripts/docker-base.sh when python:3.11-slim-bookworm cannot be pulled)
#         or, with a registry and no TLS-intercepting proxy: docker compose build
#   GPU:  docker compose -p sparkdl-pipe-gpu -f docker-compose.yml -f docker-compose.gpu.yml build
#         (BASE_IMAGE=an nvidia/cuda *-cudnn-devel image, HOROVOD_GPU_OPERATIONS=NCCL)
# Needs BuildKit (RUN --mount). No `# syntax=` line on purpose: it would pull the Dockerfile frontend
# from Docker Hub; the frontend built into the engine (Docker 20.10 and newer) reads this file.
#
# An extra CA bundle (a TLS-intercepting proxy) reaches apt and pip as the BuildKit secret `ca_bundle`:
#   docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt ...
# scripts/docker-ca-env.sh (bind-mounted, sourced) joins it to the image's own CAs in a tmpfs that
# exists only while that RUN step runs: neither the secret nor the joined bundle is in any layer.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG HOROVOD_GPU_OPERATIONS=""
ENV DEBIAN_FRONTEND=noninteractive
# Java 17 for Spark, a C++ toolchain for Horovod, procps for Spark's scripts; on bases without
# Python headers (CUDA/Ubuntu, or the bare Debian of scripts/docker-base.sh) also python3 with venv
# and headers. The Fashion-MNIST data package for the demo when the base's archive has it.
RUN --mount=type=secret,id=ca_bundle,required=false \
    --mount=type=tmpfs,target=/run/sparkdl-ca \
    --mount=type=bind,source=scripts/docker-ca-env.sh,target=/run/sparkdl-ca-env.sh \
    . /run/sparkdl-ca-env.sh \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless build-essential procps \
      ca-certificates curl \
 && (python3 -c "import venv, ensurepip, sysconfig, os, sys; sys.exit(0 if os.path.exists(sysconfig.get_paths()['include'] + '/Python.h') else 1)" \
     || apt-get install -y -qq --no-install-recommends python3 python3-venv python3-dev) \
 && (apt-get install -y -qq --no-install-recommends dataset-fashion-mnist \
     || echo "dataset-fashion-mnist not in this base's archive: the demo uses scikit-learn's digits") \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/sparkdl_pipe
COPY . .
# The Horovod wheel cache (~/.cache/sparkdl_pipe) and pip's download cache are kept between builds
# (a BuildKit cache mount, not a layer): a code change neither recompiles Horovod nor downloads
# TensorFlow again.
RUN --mount=type=cache,target=/root/.cache \
    --mount=type=secret,id=ca_bundle,required=false \
    --mount=type=tmpfs,target=/run/sparkdl-ca \
    . scripts/docker-ca-env.sh \
 && HOROVOD_GPU_OPERATIONS="${HOROVOD_GPU_OPERATIONS}" bash scripts/install.sh
ENV PATH=/opt/sparkdl_pipe/.venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/sparkdl_pipe/.venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/sparkdl_pipe/.venv/bin/python
CMD ["sparkdl-pipe", "--help"]
