#!/usr/bin/env bash
# Build the image every docker-compose service runs (sparkdl-pipe:cpu), with BuildKit.
#
#   scripts/docker-image.sh            # = make image
#
# Why a script and not `docker-compose build`: the Dockerfile needs BuildKit (a cache mount keeps the
# compiled Horovod wheel and pip's downloads between builds; the CA bundle comes in as a secret), and
# Compose v1 (Debian 12's docker-compose 1.29) builds with the legacy builder and cannot pass build
# secrets. Compose then runs the tagged image (`up` finds it and builds nothing).
#
# Environment:
#   BASE_IMAGE          base image; default: python:3.11-slim-bookworm if it is here or can be pulled,
#                       else the Debian image of scripts/docker-base.sh (sparkdl-pipe-base:bookworm),
#                       built from Debian's packages if missing (needs root and debootstrap)
#   SPARKDL_CA_BUNDLE   a CA bundle pip and apt inside the build must trust (a TLS-intercepting proxy),
#                       passed as the BuildKit secret ca_bundle, never copied into the image.
#                       Default: the host's /etc/ssl/certs/ca-certificates.crt when it exists (where the
#                       host trusts a proxy's CA, it is there); empty: no secret.
#   DOCKER              the docker client to use (default: the first on PATH that can build with
#                       BuildKit: one with the buildx plugin, or a 18.09-22.x client, whose BuildKit is
#                       built in; a 23+ client without buildx cannot)
#   DOCKER_BUILD_ARGS   extra arguments for docker build (e.g. "--no-cache")
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE=sparkdl-pipe:cpu  # the image docker-compose.yml names
OFFICIAL_BASE=python:3.11-slim-bookworm
DEBIAN_BASE=sparkdl-pipe-base:bookworm
CA_BUNDLE="${SPARKDL_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"

say() { printf '[docker-image] %s\n' "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

buildkit_docker() {
  local d v
  if [ -n "${DOCKER:-}" ]; then echo "$DOCKER"; return 0; fi
  while read -r d; do
    [ -x "$d" ] || continue
    if "$d" buildx version >/dev/null 2>&1; then echo "$d"; return 0; fi
    v="$("$d" version -f '{{.Client.Version}}' 2>/dev/null || true)"
    case "$v" in 18.09*|19.*|20.*|21.*|22.*) echo "$d"; return 0 ;; esac
  done < <(type -ap docker | awk '!seen[$0]++')
  return 1
}

DOCKER_BIN="$(buildkit_docker)" || die "no docker client here can build with BuildKit: install the buildx plugin (docker-buildx), or set DOCKER to a 20.10 client (Debian 12's docker.io: /usr/bin/docker)"
"$DOCKER_BIN" info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd, then check 'docker info')"

if [ -z "${BASE_IMAGE:-}" ]; then
  if "$DOCKER_BIN" image inspect "$OFFICIAL_BASE" >/dev/null 2>&1 \
     || timeout 120 "$DOCKER_BIN" pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then
    BASE_IMAGE="$OFFICIAL_BASE"
  else
    say "$OFFICIAL_BASE cannot be pulled (no registry): using $DEBIAN_BASE, Debian 12 from Debian's packages"
    "$DOCKER_BIN" image inspect "$DEBIAN_BASE" >/dev/null 2>&1 || bash "$ROOT/scripts/docker-base.sh" "$DEBIAN_BASE"
    BASE_IMAGE="$DEBIAN_BASE"
  fi
fi

SECRET=()
if [ -n "$CA_BUNDLE" ]; then
  [ -r "$CA_BUNDLE" ] || die "SPARKDL_CA_BUNDLE=$CA_BUNDLE is not a readable file (empty: build without one)"
  SECRET=(--secret "id=ca_bundle,src=$CA_BUNDLE")
fi

say "building $IMAGE from $BASE_IMAGE with $DOCKER_BIN (BuildKit)${CA_BUNDLE:+, CA bundle $CA_BUNDLE as the build secret ca_bundle}"
START=$SECONDS
# shellcheck disable=SC2086  # DOCKER_BUILD_ARGS is a list of words
DOCKER_BUILDKIT=1 "$DOCKER_BIN" build --progress=plain "${SECRET[@]}" \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg HOROVOD_GPU_OPERATIONS= \
  ${DOCKER_BUILD_ARGS:-} -t "$IMAGE" "$ROOT"
say "built $IMAGE in $((SECONDS - START))s"
