# syntax=docker/dockerfile:1
# One image for every service of docker-compose.yml (Spark master, workers, client): the pinned
# stack installed by the same scripts/install.sh as `make install`, Horovod compiled in the build.
#   CPU:  docker compose build
#   GPU:  docker compose -f docker-compose.yml -f docker-compose.gpu.yml build
#         (BASE_IMAGE=an nvidia/cuda *-cudnn-devel image, HOROVOD_GPU_OPERATIONS=NCCL)
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG HOROVOD_GPU_OPERATIONS=""
ENV DEBIAN_FRONTEND=noninteractive
# Java 17 for Spark, a C++ toolchain for Horovod, procps for Spark's scripts; on CUDA (Ubuntu)
# bases also python3 with venv and headers.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless build-essential procps \
      ca-certificates curl \
 && (python3 -c "import venv, ensurepip, sysconfig, os, sys; sys.exit(0 if os.path.exists(sysconfig.get_paths()['include'] + '/Python.h') else 1)" \
     || apt-get install -y -qq --no-install-recommends python3 python3-venv python3-dev) \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/sparkdl_pipe
COPY . .
# The Horovod wheel cache (~/.cache/sparkdl_pipe) is kept between builds: a code change does not recompile it.
RUN --mount=type=cache,target=/root/.cache \
    HOROVOD_GPU_OPERATIONS="${HOROVOD_GPU_OPERATIONS}" bash scripts/install.sh
ENV PATH=/opt/sparkdl_pipe/.venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/sparkdl_pipe/.venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/sparkdl_pipe/.venv/bin/python
CMD ["sparkdl-pipe", "--help"]
