# The gateway image (also runs the mock upstream: `gateway mock`).
# Installs exactly what uv.lock says (runtime dependencies only, hashes checked), never
# resolving afresh; uv itself comes pinned by version and hash from tools/uv-requirements.txt.
FROM python:3.11-slim
WORKDIR /app
ENV UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv UV_COMPILE_BYTECODE=1
COPY tools/uv-requirements.txt tools/uv-requirements.txt
RUN pip install --no-cache-dir --no-deps --require-hashes -r tools/uv-requirements.txt
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --locked --no-default-groups --no-install-project
COPY gateway ./gateway
COPY config ./config
RUN uv sync --locked --no-default-groups --no-editable
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["gateway", "serve", "--config", "config/gateway.yaml", "--host", "0.0.0.0"]
