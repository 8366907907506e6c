# fastpubsub image: `docker run IMAGE db-migrate`, `docker run IMAGE server` (the default),
# or any other command of the CLI, as with the seed's image.
FROM node:24-slim

ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    FASTPUBSUB_API_HOST=0.0.0.0 \
    FASTPUBSUB_API_PORT=8000

WORKDIR /app

# Dependencies first, so that code changes reuse this layer. The Node runtime
# and the build tools are development dependencies: the base image has Node 24.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY cli ./cli
COPY src ./src
COPY gen ./gen
COPY migrations ./migrations
COPY console/dist ./console/dist

USER node
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8000/liveness').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["node", "--max-semi-space-size=16", "--initial-old-space-size=64", "--max-old-space-size=384", "cli/run.ts"]
CMD ["server"]
