#!/usr/bin/env bash
# The whole test suite, as CI runs it: promtool's checks and unit tests of the alert rules, then cargo's
# tests (unit, integration against the simulator, dashboards and rules on a real Prometheus).
# Installs Debian's prometheus package (promtool and the server) when either is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing Debian's prometheus package (promtool and the server)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

echo "== promtool check rules / config"
promtool check rules prometheus/rules/*.yml
promtool check config prometheus/prometheus.yml
echo "== promtool test rules"
promtool test rules prometheus/tests/*.yml
echo "== cargo test"
cargo test --locked
