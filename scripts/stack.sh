#!/usr/bin/env bash
# The gateway's whole stack from OS packages, on loopback: redis-server, the mock upstream, two
# gateway replicas on the redis backend, nginx in front, Prometheus with the project's rules,
# Alertmanager with its config and a webhook sink recording its notifications. Grafana and a
# trace backend are not OS packages here and are not started.
#
#   scripts/stack.sh up [--state-dir DIR] [--time-scale N] [--scrape-interval 15s]
#   scripts/stack.sh status | down [--state-dir DIR]
#
# Ports: STACK_NGINX_PORT (8080), STACK_GATEWAY_1_PORT (8081), STACK_GATEWAY_2_PORT (8082),
# STACK_MOCK_PORT (8090), STACK_REDIS_PORT (6380), STACK_PROMETHEUS_PORT (9090),
# STACK_ALERTMANAGER_PORT (9093), STACK_SINK_PORT (9095). Details: scripts/stack.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "stack: no .venv here; run \`make install\` first (or \`make run\` / \`make test\`)" >&2
  exit 2
fi
exec "$PY" -m scripts.stack "$@"
