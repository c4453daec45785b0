#!/usr/bin/env bash
# Installs the OS programs the tests and the benchmark use, where missing:
# nginx (benchmark upstream), wrk (load generator), redis-server (state
# backend tests start their own on a free loopback port) and promtool (the
# metrics tests lint /metrics with `promtool check metrics`; Debian ships it in
# the prometheus package) and amtool (the alerting tests check
# alerts/alertmanager.yml with `amtool check-config` and `amtool config routes
# test`; Debian ships it in prometheus-alertmanager). The two servers of those
# packages are run only by scripts/stack.sh and the live observability test, on
# ports of their own: the system services are stopped and disabled after
# install where the init system allows it. And chromium (the
# console's end-to-end tests drive Debian's chromium headless through
# Playwright; Playwright's own browser downloads are never used). And
# postgresql (the PostgreSQL state backend's tests run initdb and postgres on a
# free loopback port of their own; the package's own cluster is stopped). And
# docker-compose (Debian's 1.29: tests/unit/test_compose.py validates
# docker-compose.yml with `docker-compose config`, which needs no container
# engine; none is installed, recommends are not). And valgrind (bench.instructions
# counts the gateway's instructions per request with callgrind; its unit test reads a
# real callgrind dump).
# Debian/Ubuntu (apt-get); runs as root or through sudo; never prompts.
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
{ command -v amtool && command -v prometheus-alertmanager; } >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v callgrind_control >/dev/null 2>&1 || need+=(valgrind)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-os-deps: missing ${need[*]} and no apt-get here; install them by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "install-os-deps: missing ${need[*]}; run as root or install them by hand" >&2; exit 1
  fi
fi
echo "install-os-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

# The prometheus and prometheus-alertmanager packages may start their servers
# (ports 9090 and 9093) on install; only promtool and amtool are wanted. Stop
# and disable them where there is a running init system to ask (in containers
# there is often none, or policy-rc.d kept them from starting); never fail the
# install over it.
stop_service() {
  local svc="$1"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1; then
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then
      $SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  fi
}
if [[ " ${need[*]} " == *" prometheus "* ]]; then
  stop_service prometheus
fi
if [[ " ${need[*]} " == *" prometheus-alertmanager "* ]]; then
  stop_service prometheus-alertmanager
fi
if [[ " ${need[*]} " == *" postgresql "* ]]; then
  stop_service postgresql  # the tests start their own clusters (tests/postgres_server.py)
fi
