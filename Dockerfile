# im-bridge production image: plain `node dist/cli/serve.js` on the compiled build (tsc into dist/);
# tsx is for development and tests only.
# Written without a Docker daemon at hand: build and smoke-test it before relying on it (docs/deployment.md).

# --- dependencies -------------------------------------------------------------------------------
FROM node:20-bookworm-slim AS deps
WORKDIR /app
# better-sqlite3 (and msgpackr-extract, under BullMQ) compile from source when no prebuilt binary
# matches the platform; these are their build tools. They stay in this stage only.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# --ignore-scripts skips `prepare` (the build needs the sources and TypeScript, see the build stage);
# then only better-sqlite3's and msgpackr-extract's own install scripts are run.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
  && npm rebuild better-sqlite3 msgpackr-extract \
  && npm cache clean --force

# --- build --------------------------------------------------------------------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
RUN npm run build

# --- runtime ------------------------------------------------------------------------------------
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATABASE_URL=sqlite:/data/im-bridge.db
WORKDIR /app
COPY --from=deps --chown=node:node /app/node_modules ./node_modules
COPY --chown=node:node package.json package-lock.json ./
COPY --from=build --chown=node:node /app/dist ./dist
# The embedded SQLite database lives here (mount a volume); unused with DATABASE_URL=postgres://…
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
# The image's unprivileged user (uid 1000), created by the node base image.
USER node
EXPOSE 8000
# Liveness only (/healthz); /readyz also checks the database and Redis.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM: stops taking work, waits up to 10 s for running replies (the rest are resumed from the
# inbox by another instance or the next start). Run with an init (compose: `init: true`).
CMD ["node", "dist/cli/serve.js"]
