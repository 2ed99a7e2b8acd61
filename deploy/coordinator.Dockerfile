# syntax=docker/dockerfile:1
# Twinfed coordinator image. Build context is the repository root:
#   docker build -f deploy/coordinator.Dockerfile -t twinfed-coordinator .
# Needs BuildKit (the default builder since Docker 23). Run:
#   docker run -d -e TWINFED_ADMIN_TOKEN=... -p 127.0.0.1:7400:7400 \
#     -v twinfed-coordinator:/var/lib/twinfed twinfed-coordinator
ARG NODE_VERSION=20

# ---------------------------------------------------------------- build
FROM node:${NODE_VERSION}-bookworm AS build
# Toolchain for better-sqlite3's node-gyp build (used when no prebuilt binary fits).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
ENV TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 \
    npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
WORKDIR /app
# Manifests first: `npm ci` stays cached until a dependency changes.
COPY package.json package-lock.json ./
COPY protocols/package.json protocols/
COPY shared/package.json shared/
COPY coordinator/package.json coordinator/
COPY site-node/package.json site-node/
COPY cli/package.json cli/
COPY test/package.json test/
RUN npm ci
# Sources are copied by name, so a host node_modules/ or dist/ never enters the image
# even where the ignore file is not honoured.
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
# Build the CLI and the workspaces it depends on (not the test workspace), then drop dev deps.
RUN npm run build -- --filter=@twinfed/cli... \
 && npm prune --omit=dev \
 && chmod 0755 cli/dist/bin.js
# Lay out exactly what runs: workspace links in node_modules/@twinfed point at ../../<pkg>,
# and migrations must sit at <pkg>/drizzle next to <pkg>/dist.
RUN set -eu; mkdir -p /out; cp -a package.json node_modules /out/; \
    rm -f /out/node_modules/@twinfed/test; \
    for p in protocols shared coordinator site-node cli; do \
      mkdir -p /out/$p; cp -a $p/package.json $p/dist /out/$p/; \
      if [ -d $p/drizzle ]; then cp -a $p/drizzle /out/$p/; fi; \
      if [ -d $p/node_modules ]; then cp -a $p/node_modules /out/$p/; fi; \
    done; \
    find /out -name '*.tsbuildinfo' -delete
# The coordinator never loads TensorFlow.js or the imaging readers (test/src/coordinator-closure.test.ts),
# but npm keeps them: they are dependencies of @twinfed/shared, whose core the coordinator uses.
# Drop every package only they need (computed from the lockfile), then check the server still loads.
COPY deploy/prune-coordinator.mjs /tmp/
RUN node /tmp/prune-coordinator.mjs package-lock.json /out \
 && test ! -e /out/node_modules/@tensorflow \
 && node --input-type=module -e "await import('/out/coordinator/dist/index.js'); await import('/out/cli/dist/http.js')" \
 && node /out/cli/dist/bin.js --help > /dev/null

# -------------------------------------------------------------- runtime
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
RUN groupadd --system --gid 10001 twinfed \
 && useradd --system --uid 10001 --gid twinfed --home-dir /var/lib/twinfed --no-create-home --shell /usr/sbin/nologin twinfed \
 && install -d -o twinfed -g twinfed -m 0700 /var/lib/twinfed
# Code is owned by root and read-only for the service user.
COPY --from=build /out /app
RUN ln -s /app/cli/dist/bin.js /usr/local/bin/twinfed
WORKDIR /app
USER twinfed
VOLUME ["/var/lib/twinfed"]
EXPOSE 7400
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:7400/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Node is PID 1; the CLI handles SIGTERM/SIGINT and closes the database cleanly.
ENTRYPOINT ["node", "/app/cli/dist/bin.js"]
# TWINFED_ADMIN_TOKEN (min 16 chars) must be set in the environment.
CMD ["coordinator", "start", "--data-dir", "/var/lib/twinfed", "--host", "0.0.0.0", "--port", "7400"]
