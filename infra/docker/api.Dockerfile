# The API: Fastify, BullMQ producers, the object store. It loads no tensor code, and the image
# ships none (infra/docker/assemble.cjs copies only what apps/api reaches).
#
#   buildah bud --format docker -f infra/docker/api.Dockerfile -t ghcr.io/ddpm-service/api:0.2.0 .
#
# Base pinned by exact tag (Debian bookworm, Node.js 24.22.3: the newest LTS line the npm registry carries); NODE_IMAGE overrides it (a mirror,
# or a digest: docker.io/library/node@sha256:...).
ARG NODE_IMAGE=docker.io/library/node:24.22.3-bookworm-slim

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
# Compile with the dev tools (and bundle the web console the API serves), then reinstall production dependencies only and assemble the app.
# Install scripts stay off: nothing the API uses needs one (sharp ships prebuilt binaries).
RUN --mount=type=cache,target=/root/.npm --mount=type=secret,id=npm-ca,target=/run/secrets/npm-ca npm ci --ignore-scripts && npx tsc -b apps/api && node apps/console/build.cjs
# The API reaches only tensor-free packages (the settings, with the U-Net's and the diffusion's
# configurations): no TensorFlow.js in its image.
RUN --mount=type=cache,target=/root/.npm --mount=type=secret,id=npm-ca,target=/run/secrets/npm-ca npm ci --omit=dev --ignore-scripts && node infra/docker/assemble.cjs apps/api /out

FROM ${NODE_IMAGE}
# A user of our own (uid 10001, as the Kubernetes pods run); the code is root's and read-only to it.
RUN groupadd --gid 10001 ddpm && useradd --uid 10001 --gid ddpm --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ddpm
WORKDIR /app
COPY --from=build /out /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
USER 10001:10001
EXPOSE 8080
# Liveness: the event loop answers (GET /readyz also asks Redis).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
CMD ["node", "apps/api/dist/server.js"]
