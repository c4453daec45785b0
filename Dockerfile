# The gateway image (also runs the mock upstream: `gateway mock`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY config ./config
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["gateway", "serve", "--config", "config/gateway.yaml", "--host", "0.0.0.0"]
