# crm-events-sink: Kafka -> event_journal ingest, Temporal replay worker and the HTTP API in one process.
#   docker build -t crm-events-sink .       (docker-compose.yml builds it as the crm-events-sink service)
# Debian-based on purpose: the Temporal worker's native core bridge ships glibc builds only, not musl (Alpine).
ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------- build: compile TypeScript, then drop dev deps
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Dependencies first, so a source change does not reinstall them.
COPY package.json package-lock.json ./
# patch-package (postinstall) applies patches/ to node_modules: kafkajs 2.2.4's fetch loop fix.
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# ---------------------------------------------------------------- runtime
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Migrations are read at start from ../../sql relative to dist/shared, i.e. /app/sql.
COPY --from=build /app/sql ./sql
# The operator console's static files, read at start from ../../../api/console relative to dist/api/routes.
COPY --from=build /app/api/console ./api/console
USER node
# 9105: Prometheus metrics (/metrics). 9106: HTTP API (/health, /events, /replay, /dlq, /docs).
EXPOSE 9105 9106
# fetch() is built into Node 20; the slim image has neither curl nor wget.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=5 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.API_PORT || 9106) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The bin `crm-events-sink`: `start` migrates, creates the topics, then runs ingest + worker + API until SIGTERM.
# Other subcommands work the same way, e.g. `docker compose run --rm crm-events-sink migrate`.
# A heap limit makes V8 collect early instead of growing towards a quarter of the host's memory (README "Memory").
ENTRYPOINT ["node", "--max-old-space-size=512", "dist/cli/main.js"]
CMD ["start"]
