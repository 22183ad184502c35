#!/usr/bin/env bash
# `make compose-test`: the docker-compose cluster built and run for real, then removed.
#
#   1 image     scripts/docker-image.sh (BuildKit; the Horovod wheel and pip's downloads in a cache mount)
#   2 up        spark-master, spark-worker-1, spark-worker-2 (docker-compose.yml, a project of its own)
#   3 workers   wait until the master has both workers ALIVE
#   4 data      client: the first TRAIN + TEST Fashion-MNIST images as PNG files in the shared /data volume
#   5 ingest    client: spark-submit jobs/ingest_images.py on the cluster
#   6 train     client: spark-submit jobs/train.py, 2 Horovod ranks (one per worker container)
#   7 score     client: spark-submit jobs/score.py on the raw test PNGs
#   8 check     client: scripts/compose_check.py (counts reconcile, accuracy over the bar, ranks on
#               spark-worker-1 and spark-worker-2)
#   9 down      down -v, then nothing of the project may be left (containers, networks, volumes)
# Step 9 also runs when a step fails or the run is interrupted. Each step's time is printed.
#
# Environment: COMPOSE (default: docker-compose, else `docker compose`), COMPOSE_TEST_PROJECT (default
# a unique name), TRAIN (4000), TEST (1000), EPOCHS (8), MIN_ACCURACY (0.75), SKIP_IMAGE=1 (use the
# sparkdl-pipe:cpu already built), KEEP=1 (leave the cluster up; `<compose> -p <project> down -v` later),
# and scripts/docker-image.sh's (BASE_IMAGE, SPARKDL_CA_BUNDLE, DOCKER, DOCKER_BUILD_ARGS).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

PROJECT="${COMPOSE_TEST_PROJECT:-sparkdl-ct-$(date +%Y%m%d%H%M%S)-$$}"
TRAIN="${TRAIN:-4000}"
TEST="${TEST:-1000}"
EPOCHS="${EPOCHS:-8}"
MIN_ACCURACY="${MIN_ACCURACY:-0.75}"
WORKERS=(spark-worker-1 spark-worker-2)
MASTER_URL=spark://spark-master:7077
WORK=/data/compose-test
if [ -n "${COMPOSE:-}" ]; then
  read -r -a DC <<<"$COMPOSE"
elif command -v docker-compose >/dev/null 2>&1; then
  DC=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  DC=(docker compose)
else
  echo "[compose-test] ERROR: neither docker-compose nor 'docker compose' found (apt-get install docker-compose)" >&2
  exit 1
fi
DC+=(-p "$PROJECT" -f "$ROOT/docker-compose.yml")
# Any free host port on 127.0.0.1 (an empty value): the test never collides with a cluster already
# using 7077/8080-8082, and reaches the cluster only from inside the project's network.
export SPARKDL_PORT_MASTER= SPARKDL_PORT_MASTER_UI= SPARKDL_PORT_WORKER1_UI= SPARKDL_PORT_WORKER2_UI= \
       SPARKDL_PORT_CLIENT_UI=

say() { printf '[compose-test] %s\n' "$*"; }
STEPS=()
CURRENT=""
step() {  # step NAME COMMAND...: run it, time it
  local name="$1" t0=$SECONDS
  shift
  CURRENT="$name"
  say "=== $name: $*"
  "$@"
  STEPS+=("$(printf '%-8s %5ds' "$name" $((SECONDS - t0)))")
  say "=== $name: done in $((SECONDS - t0))s"
  CURRENT=""
}
client() {  # a one-off client container on the project's network (no TTY: make has none)
  "${DC[@]}" run --rm -T client "$@"
}
left_over() {  # what of the project is still there, one line per kind
  local label="label=com.docker.compose.project=$PROJECT"
  printf 'containers: %s; networks: %s; volumes: %s\n' \
    "$(docker ps -aq --filter "$label" | xargs echo)" "$(docker network ls -q --filter "$label" | xargs echo)" \
    "$(docker volume ls -q --filter "$label" | xargs echo)"
}
cleanup() {
  local rc=$? t0=$SECONDS
  trap - EXIT INT TERM
  if [ -n "$CURRENT" ]; then
    say "FAILED in step '$CURRENT' (exit $rc); the services' last log lines:"
    "${DC[@]}" logs --no-color --tail=40 2>&1 | sed 's/^/    /' || true
    [ "$rc" != 0 ] || rc=1
  fi
  if [ "${KEEP:-0}" = 1 ] && [ "$rc" = 0 ]; then
    say "KEEP=1: the cluster stays up; remove it with: ${DC[*]} --profile client down -v"
  else
    say "=== down: ${DC[*]} --profile client down -v --remove-orphans"
    "${DC[@]}" --profile client down -v --remove-orphans 2>&1 | sed 's/^/    /' || true
    local left
    left="$(left_over)"
    if [ "$left" != "containers: ; networks: ; volumes: " ]; then
      say "ERROR: left behind after down -v: $left (removing them)"
      docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker rm -f >/dev/null || true
      docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker network rm >/dev/null || true
      docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker volume rm >/dev/null || true
      [ "$rc" != 0 ] || rc=1
    fi
    STEPS+=("$(printf '%-8s %5ds' down $((SECONDS - t0)))")
    say "after down: $(left_over)"
  fi
  say "step times (project $PROJECT):"
  printf '    %s\n' "${STEPS[@]}"
  if [ "$rc" = 0 ]; then say "PASSED"; else say "FAILED (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_image() {
  if [ "${SKIP_IMAGE:-0}" = 1 ]; then
    docker image inspect sparkdl-pipe:cpu >/dev/null
    say "SKIP_IMAGE=1: using the existing sparkdl-pipe:cpu"
  else
    bash "$ROOT/scripts/docker-image.sh"
  fi
}

wait_for_workers() {  # the master's /json lists both workers ALIVE (polled, with a deadline)
  local deadline=$((SECONDS + ${WORKER_TIMEOUT:-300}))
  until "${DC[@]}" exec -T spark-master python -m sparkdl_pipe.cluster check \
          --ui http://spark-master:8080 --min-workers "${#WORKERS[@]}" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      say "ERROR: the workers did not register with the master in time"
      "${DC[@]}" ps
      return 1
    fi
    sleep 2
  done
  "${DC[@]}" exec -T spark-master python -c "
from sparkdl_pipe.cluster import alive_workers, master_status
for w in alive_workers(master_status('http://spark-master:8080')):
    print('    registered:', w['host'], w['state'], w['cores'], 'core(s)', w['memory'], 'MB')"
}

submit() {  # submit JOB ARGS...: spark-submit from the client container to the compose master
  local job="$1"
  shift
  client spark-submit --master "$MASTER_URL" "jobs/$job" "$@"
}

say "project $PROJECT, compose: ${DC[*]}"
step image build_image
step up "${DC[@]}" up -d --no-build spark-master "${WORKERS[@]}"
step workers wait_for_workers
step data client python scripts/compose_check.py write-data --root "$WORK/raw" --train "$TRAIN" --test "$TEST"
step ingest submit ingest_images.py --input "file://$WORK/raw" --output "file://$WORK/dataset" \
  --image-size 28 --channels 1
step train submit train.py --dataset "file://$WORK/dataset" --output "file://$WORK/model" --model cnn \
  --epochs "$EPOCHS" --num-proc 2
step score submit score.py --model "file://$WORK/model" --input "file://$WORK/raw/test" \
  --output "file://$WORK/scores"
step check client python scripts/compose_check.py check --workdir "$WORK" --train "$TRAIN" --test "$TEST" \
  --min-accuracy "$MIN_ACCURACY" --hosts "$(IFS=,; echo "${WORKERS[*]}")"
