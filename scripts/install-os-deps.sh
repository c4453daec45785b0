#!/usr/bin/env bash
# Installs the OS programs the tests and the benchmark use, where missing:
# nginx (benchmark upstream), wrk (load generator) and redis-server (state
# backend tests start their own on a free loopback port).
# Debian/Ubuntu (apt-get); runs as root or through sudo; never prompts.
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)

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
