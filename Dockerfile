# The gateway image (also runs the mock upstream: `gateway mock`); docs/deployment.md, "Container image".
#
# Two stages. `build` installs exactly what uv.lock says (the runtime dependencies plus the
# `container` group, dumb-init; hashes checked; never resolving afresh) and the gateway package
# itself, non-editable, into /app/.venv; uv comes pinned by version and hash from
# tools/uv-requirements.txt. `runtime` copies only that venv and the default config onto a fresh
# base: no uv, no pip run, no sources, no build tools.
#
# Run it with a read-only root filesystem: the gateway writes only under /app/data (embedded
# SQLite state, spend journal, backups, request archives; a volume) and /tmp (mount a tmpfs):
#   docker run --read-only --tmpfs /tmp -v gateway-data:/app/data -e GATEWAY_MASTER_KEY -p 8080:8080 IMAGE
#
# Checked without a container engine by tests/unit/test_dockerfile.py (structure, pins, COPY
# sources against .dockerignore) and tests/e2e/test_container_install.py (runs these uv sync
# lines into a scratch venv and serves from it as a non-root user).

# The base image, pinned to an exact patch release on both stages (the venv's interpreter is the
# base image's /usr/local/bin/python3.11). The release pipeline should pin its digest as well
# (python:3.11.14-slim-bookworm@sha256:...): no registry can be reached where this file is
# developed, so the digest is not written here.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY tools/uv-requirements.txt tools/uv-requirements.txt
RUN pip install --no-cache-dir --no-deps --require-hashes -r tools/uv-requirements.txt
# The dependencies first (a layer that changes only with the lock), then the gateway package.
COPY pyproject.toml uv.lock README.md LICENSE .python-version ./
RUN uv sync --locked --no-default-groups --group container --no-editable --no-install-project
COPY gateway ./gateway
RUN uv sync --locked --no-default-groups --group container --no-editable

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/example/llm-gateway
LABEL org.opencontainers.image.title="llm-gateway" \
      org.opencontainers.image.description="An observability-first, OpenAI-compatible LLM gateway" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
# The runtime user: uid/gid 10001, no home, no login shell.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gateway
WORKDIR /app
# Owned by root and read-only to the runtime user: the venv (the gateway package is inside it)
# and the default config. /app/data is the one directory it may write.
COPY --from=build /app/.venv /app/.venv
COPY config ./config
RUN mkdir -p /app/data && chown 10001:10001 /app/data && chmod 0750 /app/data
VOLUME ["/app/data"]
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/tmp \
    GATEWAY_CONFIG=/app/config/gateway.yaml
USER 10001:10001
# 8080: the client API (and /metrics unless METRICS_PORT is set); 9464: /metrics on a port of its
# own, as the compose stack sets it (METRICS_PORT=9464).
EXPOSE 8080 9464
# slim has no curl: the probe is the venv's Python. /ready answers 200 once the gateway serves.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/ready' % os.environ.get('PORT', '8080'); sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"]
# dumb-init as PID 1 passes SIGTERM on to the gateway and reaps children; on SIGTERM the gateway
# stops accepting and drains what is in flight for server.shutdown_grace_s (30 s by default):
# give `docker stop` / stop_grace_period more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/.venv/bin/dumb-init", "--"]
CMD ["gateway", "serve", "--config", "/app/config/gateway.yaml", "--host", "0.0.0.0"]
