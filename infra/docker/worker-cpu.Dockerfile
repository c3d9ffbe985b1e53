# A CPU worker: TensorFlow.js on WebAssembly with our kernels built for the CPU (the `native`
# backend, compiled here with gcc for every x86-64 level and chosen at start by the CPU's flags),
# and the native TensorFlow CPU binding when the build machine can download libtensorflow
# (TFJS_NODE=1).
#
#   buildah bud --format docker -f infra/docker/worker-cpu.Dockerfile -t ghcr.io/ddpm-service/worker-cpu:0.2.0 .
#   buildah bud --format docker --build-arg TFJS_NODE=1 -f infra/docker/worker-cpu.Dockerfile -t ghcr.io/ddpm-service/worker-cpu:0.2.0-tf .
ARG NODE_IMAGE=docker.io/library/node:24.22.3-bookworm-slim

FROM ${NODE_IMAGE} AS build
ARG TFJS_NODE=0
WORKDIR /src
# A registry mirror or TLS-intercepting proxy: pass its CA as the build secret npm-ca
# (--secret id=npm-ca,src=ca.pem); it is mounted for the npm steps only, never stored in a layer.
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false NODE_EXTRA_CA_CERTS=/run/secrets/npm-ca
COPY package.json package-lock.json tsconfig.base.json tsconfig.json ./
COPY packages ./packages
COPY apps ./apps
# The lab is a workspace of the lockfile, installed with the rest; no image ships it (assemble.cjs copies what the app reaches).
COPY tools ./tools
COPY infra/docker/assemble.cjs ./infra/docker/assemble.cjs
RUN --mount=type=cache,target=/root/.npm --mount=type=secret,id=npm-ca,target=/run/secrets/npm-ca npm ci --ignore-scripts && npx tsc -b apps/worker
# The native kernels (packages/kernels/c/native): a C compiler in this stage only.
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev \
  && DDPM_CC=gcc node packages/kernels/c/native/build.cjs
# @tensorflow/tfjs-node's install step downloads libtensorflow (storage.googleapis.com): only
# with TFJS_NODE=1, and then a failed download fails the build rather than shipping a broken binding.
RUN --mount=type=cache,target=/root/.npm --mount=type=secret,id=npm-ca,target=/run/secrets/npm-ca npm ci --omit=dev --ignore-scripts \
  && if [ "$TFJS_NODE" = 1 ]; then \
       npm rebuild @tensorflow/tfjs-node && node infra/docker/assemble.cjs apps/worker /out --omit @tensorflow/tfjs-node-gpu; \
     else \
       node infra/docker/assemble.cjs apps/worker /out --omit @tensorflow/tfjs-node --omit @tensorflow/tfjs-node-gpu; \
     fi \
  && cp -r packages/kernels/build /out/packages/kernels/build

FROM ${NODE_IMAGE}
RUN groupadd --gid 10001 ddpm && useradd --uid 10001 --gid ddpm --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ddpm
WORKDIR /app
COPY --from=build /out /app
# The root file system can be read-only: caches (extractor weights, reference statistics) and
# temporary files go to /tmp, a volume or tmpfs in compose and Kubernetes.
ENV NODE_ENV=production HOST=0.0.0.0 METRICS_PORT=9464 XDG_CACHE_HOME=/tmp/cache
USER 10001:10001
EXPOSE 9464
# Liveness: /healthz fails when a job process stopped beating (docs/deploying.md, "Probes").
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=4 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:'+(process.env.METRICS_PORT||9464)+'/healthz',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
CMD ["node", "apps/worker/dist/main.js"]
