# A GPU worker: @tensorflow/tfjs-node-gpu 4.22 on the CUDA 11.8 runtime with cuDNN 8 (Ubuntu 22.04),
# Node.js 24 copied from the official image.
#
# Why CUDA 11.8 on Ubuntu 22.04: the binding's libtensorflow 2.9 was built against CUDA 11.2 and
# cuDNN 8.1, and links the sonames every CUDA 11 runtime carries (libcudart.so.11.0,
# libcublas.so.11, libcudnn.so.8): CUDA's minor-version compatibility lets it run on any 11.x
# runtime with a driver of at least 450.80.02. 11.8 is the last and best-supported CUDA 11 release,
# and the newest one NVIDIA publishes cuDNN 8 images for; Ubuntu 22.04 is in standard support
# until 2027, where 11.2's Ubuntu 20.04 is past it, and its glibc 2.35 runs Node.js 24 (which needs
# 2.28). CUDA 12 would need a libtensorflow built for it, which tfjs-node-gpu does not ship.
#
#   buildah bud --format docker -f infra/docker/worker-gpu.Dockerfile -t ghcr.io/ddpm-service/worker-gpu:0.2.0 .
#
# Stages: `build` compiles and assembles the worker (any machine), `gpu-deps` adds the native
# binding (downloads libtensorflow-gpu from storage.googleapis.com), the last stage is the CUDA
# runtime. Run it on nodes with the NVIDIA container toolkit (Kubernetes: the gpu overlay).
ARG NODE_IMAGE=docker.io/library/node:24.22.3-bookworm-slim
ARG CUDA_IMAGE=docker.io/nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04

FROM ${NODE_IMAGE} AS build
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
RUN --mount=type=cache,target=/root/.npm --mount=type=secret,id=npm-ca,target=/run/secrets/npm-ca npm ci --omit=dev --ignore-scripts

FROM build AS gpu-deps
RUN --mount=type=secret,id=npm-ca,target=/run/secrets/npm-ca npm rebuild @tensorflow/tfjs-node-gpu \
  && node infra/docker/assemble.cjs apps/worker /out --omit @tensorflow/tfjs-node

FROM ${CUDA_IMAGE}
# Node.js from the official image: its binary runs on Ubuntu 22.04's glibc 2.35.
COPY --from=build /usr/local/bin/node /usr/local/bin/node
RUN groupadd --gid 10001 ddpm && useradd --uid 10001 --gid ddpm --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ddpm
WORKDIR /app
COPY --from=gpu-deps /out /app
ENV NODE_ENV=production HOST=0.0.0.0 METRICS_PORT=9464 XDG_CACHE_HOME=/tmp/cache \
    DDPM_BACKEND=tensorflow-gpu TF_FORCE_GPU_ALLOW_GROWTH=true TF_CPP_MIN_LOG_LEVEL=1
USER 10001:10001
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=4 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:'+(process.env.METRICS_PORT||9464)+'/healthz',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
CMD ["node", "apps/worker/dist/main.js"]
