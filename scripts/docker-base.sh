#!/usr/bin/env bash
# A Docker base image made from Debian's own packages, for machines that reach a Debian mirror but
# no container registry (`FROM python:3.11-slim-bookworm` cannot be pulled there).
#
#   sudo scripts/docker-base.sh                  # -> local image sparkdl-pipe-base:bookworm
#   sudo scripts/docker-base.sh --force my:tag   # rebuild, another tag
#
# debootstrap builds a minimal Debian 12 (bookworm) root filesystem (variant minbase, plus
# ca-certificates so apt can also use https mirrors), the apt sources get bookworm-updates and
# bookworm-security, and `docker import` turns the tree into an image. Python 3.11, Java 17 and the
# C++ toolchain are not in it: the Dockerfile installs them with apt, the same step for every base.
# The build image then names it: docker build --build-arg BASE_IMAGE=sparkdl-pipe-base:bookworm ...
# (scripts/docker-image.sh and `make compose-test` do this when no registry image is there).
# Needs root, debootstrap (apt-get install debootstrap) and a running Docker engine.
# Mirror: DEBIAN_MIRROR (default http://deb.debian.org/debian; apt checks the packages' signatures,
# so plain http is the default of Debian's own images too). Nothing of the host is copied in.
set -euo pipefail

FORCE=0
if [ "${1:-}" = "--force" ]; then FORCE=1; shift; fi
TAG="${1:-sparkdl-pipe-base:bookworm}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}"

say() { printf '[docker-base] %s\n' "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap needs it)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found: apt-get install -y debootstrap"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd, then check 'docker info')"

if [ "$FORCE" = 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  say "$TAG already exists (--force rebuilds it)"
  exit 0
fi

ROOTFS="$(mktemp -d /tmp/sparkdl-base.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
START=$SECONDS
say "debootstrap $SUITE (minbase) from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -20 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; die "debootstrap failed"; }
rm -f "$ROOTFS.log"

cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
# What Debian's official container images set: no package caches or translations kept in layers.
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
# The host's resolver and name belong to the host; Docker writes its own at run time.
rm -f "$ROOTFS/etc/resolv.conf" "$ROOTFS/etc/hostname"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*

say "importing the root filesystem as $TAG"
tar --numeric-owner -C "$ROOTFS" -c . \
  | docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["bash"]' \
      -m "Debian $SUITE minbase (debootstrap, $MIRROR), sparkdl_pipe scripts/docker-base.sh" \
      - "$TAG" >/dev/null
say "$TAG: $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}') in $((SECONDS - START))s"
