#!/usr/bin/env bash
# Spark GPU discovery script (spark.worker.resource.gpu.discoveryScript): prints the GPUs this node
# has, as Spark's resource JSON, e.g. {"name": "gpu", "addresses": ["0", "1"]}.
# Addresses are nvidia-smi's indices, which is what CUDA_VISIBLE_DEVICES takes; the executors pin
# each task to the address Spark assigns it (sparkdl_pipe/executor/devices.py).
set -euo pipefail
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_discovery.sh: nvidia-smi not found (no NVIDIA driver, or the container has no GPU reserved)" >&2
  exit 1
fi
addresses=""
while IFS= read -r index; do
  index="${index//[[:space:]]/}"
  [ -n "$index" ] || continue
  addresses="${addresses:+$addresses, }\"$index\""
done < <(nvidia-smi --query-gpu=index --format=csv,noheader)
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
