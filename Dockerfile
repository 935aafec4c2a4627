# meshlet: one image, one entry point (`meshlet proxy|control|load|...`).
# Multi-stage: install production dependencies in a build stage, copy them into a slim runtime.
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production deps only; the `node` devDependency (the pinned runtime for dev boxes) is not needed
# in an image that already runs Node 24.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:24-slim
ENV NODE_ENV=production
# iptables for the injected init container (`meshlet iptables`, run as root with NET_ADMIN only there).
RUN apt-get update && apt-get install -y --no-install-recommends iptables && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY cli ./cli
COPY proxy ./proxy
COPY control ./control
COPY bench ./bench
RUN ln -s /app/bin/meshlet.js /usr/local/bin/meshlet
# Every container starts with an empty temp directory, so without this each sidecar would
# type-strip its TypeScript at start and keep the stripper's memory (~35 MB more RSS, see
# docs/operations.md). The cache is filled once here; at run time it is only read.
ENV NODE_COMPILE_CACHE=/app/.compile-cache
RUN node bin/warm-compile-cache.js && chmod -R a+rX /app/.compile-cache
# Non-root, like a sidecar should run.
USER node
# 15001 outbound, 15006 inbound, 15000 admin, 15021 health, 15010 discovery, 15014 ops API, 15017 webhook.
EXPOSE 15001 15006 15000 15021 15010 15014 15017
ENTRYPOINT ["meshlet"]
CMD ["--help"]
