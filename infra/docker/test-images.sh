#!/usr/bin/env bash
# npm run test:images — builds the project's images with buildah (no Docker daemon, no registry:
# vfs storage, chroot isolation) against a local stand-in for the Node base image, then starts the
# API and a CPU worker from the built images against this machine's Redis and an S3 endpoint, and
# runs a short train job through them (infra/docker/run-images.cjs). The GPU image is built up to
# its `build` stage: its later stages need libtensorflow-gpu's download and the CUDA base image,
# neither reachable here.
#
# Needs root (buildah, debootstrap; installed from Debian when missing), Redis on 127.0.0.1:6379
# (REDIS_URL to use another) and `npm ci` done (s3rver, the S3 endpoint, is a dev dependency).
set -euo pipefail
cd "$(dirname "$0")/../.."
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

if [ "$(id -u)" != 0 ]; then
  echo "test:images needs root (buildah with chroot isolation, debootstrap)" >&2
  exit 2
fi
need=()
for tool in buildah:buildah debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

started=$(date +%s)
# vfs stores every layer as a full copy: drop the previous run's untagged layers first, so the disk
# holds at most one run's (the stand-in base and the tagged images stay).
buildah rmi --prune >/dev/null 2>&1 || true
infra/docker/standin/node-base.sh

# How this machine reaches the npm registry, passed to the build: an /etc/hosts entry for it and
# the CA bundle npm trusts here (a TLS-intercepting proxy's), as the build secret npm-ca.
build_args=(--format docker --layers)
registry_host="$(npm config get registry | sed -E 's#^[a-z]+://([^/:]+).*#\1#')"
hosts_ip="$(awk -v h="$registry_host" '$0 !~ /^#/ { for (i = 2; i <= NF; i++) if ($i == h) { print $1; exit } }' /etc/hosts)"
[ -n "$hosts_ip" ] && build_args+=(--add-host "$registry_host:$hosts_ip")
ca="${NODE_EXTRA_CA_CERTS:-$(npm config get cafile 2>/dev/null || true)}"
[ -n "$ca" ] && [ "$ca" != undefined ] && [ "$ca" != null ] && [ -f "$ca" ] && build_args+=(--secret "id=npm-ca,src=$ca")

build() {
  local t0=$(date +%s)
  echo "building $2 ($1)"
  buildah bud "${build_args[@]}" "${@:3}" -f "infra/docker/$1" -t "$2" . >"/tmp/ddpm-build-${1%.Dockerfile}.log" 2>&1 || { tail -40 "/tmp/ddpm-build-${1%.Dockerfile}.log"; exit 1; }
  echo "  built in $(( $(date +%s) - t0 )) s"
}
build api.Dockerfile ghcr.io/ddpm-service/api:0.2.0
build worker-cpu.Dockerfile ghcr.io/ddpm-service/worker-cpu:0.2.0
build worker-gpu.Dockerfile localhost/ddpm-worker-gpu-build:0.2.0 --target build
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'ddpm|node' | sort

node infra/docker/run-images.cjs
echo "test:images passed in $(( $(date +%s) - started )) s"
