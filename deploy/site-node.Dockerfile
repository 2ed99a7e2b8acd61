# syntax=docker/dockerfile:1
# Twinfed hospital site node image. Build context is the repository root:
#   docker build -f deploy/site-node.Dockerfile -t twinfed-site-node .
# GPU training (opt-in; NVIDIA host with the NVIDIA Container Toolkit):
#   docker build -f deploy/site-node.Dockerfile --build-arg TWINFED_GPU=1 -t twinfed-site-node:gpu .
# Needs BuildKit (the default builder since Docker 23): it builds only the stages the
# chosen TWINFED_GPU value uses, so the default build never pulls the CUDA image.
# The site dials OUT to the coordinator; the image exposes no port.
ARG NODE_VERSION=20
ARG TWINFED_GPU=0
# @tensorflow/tfjs-node-gpu 4.22 loads libtensorflow 2.9, built for CUDA 11 + cuDNN 8.
ARG CUDA_IMAGE=nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04

FROM node:${NODE_VERSION}-bookworm-slim AS node-dist

# CPU (default): Debian bookworm for both build and runtime.
FROM node:${NODE_VERSION}-bookworm AS build-base-0
FROM node:${NODE_VERSION}-bookworm-slim AS runtime-base-0

# GPU: CUDA runtime + cuDNN with the official Node binary (built for glibc >= 2.28).
# Build and runtime share this base so native addons match its glibc/libstdc++.
FROM ${CUDA_IMAGE} AS runtime-base-1
COPY --from=node-dist /usr/local/bin/node /usr/local/bin/node
COPY --from=node-dist /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
FROM runtime-base-1 AS build-base-1

# ---------------------------------------------------------------- build
FROM build-base-${TWINFED_GPU} AS build
ARG TWINFED_GPU
# Toolchain for better-sqlite3 (and tfjs-node-gpu's addon) when no prebuilt binary fits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
ENV TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 \
    npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
WORKDIR /app
COPY package.json package-lock.json ./
COPY protocols/package.json protocols/
COPY shared/package.json shared/
COPY coordinator/package.json coordinator/
COPY site-node/package.json site-node/
COPY cli/package.json cli/
COPY test/package.json test/
RUN npm ci
# Sources by name, so a host node_modules/ or dist/ never enters the image.
COPY tsconfig.base.json tsconfig.json turbo.json ./
COPY protocols/tsconfig.json protocols/
COPY protocols/src protocols/src
COPY shared/tsconfig.json shared/
COPY shared/src shared/src
COPY coordinator/tsconfig.json coordinator/
COPY coordinator/src coordinator/src
COPY coordinator/drizzle coordinator/drizzle
COPY site-node/tsconfig.json site-node/
COPY site-node/src site-node/src
COPY site-node/drizzle site-node/drizzle
COPY cli/tsconfig.json cli/
COPY cli/src cli/src
RUN npm run build -- --filter=@twinfed/cli... \
 && npm prune --omit=dev \
 && chmod 0755 cli/dist/bin.js
# GPU opt-in: `npm run setup:gpu` (npm install --no-save @tensorflow/tfjs-node-gpu) after the
# prune, which would otherwise remove it as extraneous; omit=dev keeps dev deps out.
# It downloads libtensorflow at build time; CUDA itself is only needed at run time.
RUN if [ "$TWINFED_GPU" = "1" ]; then npm_config_omit=dev npm run setup:gpu; fi
# The @tensorflow/tfjs-backend-wasm and node-seal .wasm files stay inside node_modules.
RUN set -eu; mkdir -p /out; cp -a package.json node_modules /out/; \
    rm -f /out/node_modules/@twinfed/test; \
    for p in protocols shared coordinator site-node cli; do \
      mkdir -p /out/$p; cp -a $p/package.json $p/dist /out/$p/; \
      if [ -d $p/drizzle ]; then cp -a $p/drizzle /out/$p/; fi; \
      if [ -d $p/node_modules ]; then cp -a $p/node_modules /out/$p/; fi; \
    done; \
    find /out -name '*.tsbuildinfo' -delete

# -------------------------------------------------------------- runtime
FROM runtime-base-${TWINFED_GPU} AS runtime
ENV NODE_ENV=production
RUN groupadd --system --gid 10001 twinfed \
 && useradd --system --uid 10001 --gid twinfed --home-dir /var/lib/twinfed --no-create-home --shell /usr/sbin/nologin twinfed \
 && install -d -o twinfed -g twinfed -m 0700 /var/lib/twinfed
COPY --from=build /out /app
RUN ln -s /app/cli/dist/bin.js /usr/local/bin/twinfed
WORKDIR /app
USER twinfed
# identity.json (0600), site.json, site.db, trained models: keep this volume backed up and private.
VOLUME ["/var/lib/twinfed"]
ENTRYPOINT ["node", "/app/cli/dist/bin.js"]
# Enrol and import first (see deploy/README.md): `run` needs site.json and identity.json.
CMD ["site", "run", "--data-dir", "/var/lib/twinfed"]
