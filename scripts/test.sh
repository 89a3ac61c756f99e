#!/usr/bin/env bash
# The whole test suite, as CI runs it: promtool's checks and unit tests of the alert rules, then cargo's
# tests (unit, integration against the simulator, dashboards and rules on a real Prometheus, the
# committed dashboards against what grafana/generate.py makes with the pinned Grafana Foundation SDK).
# Installs Debian's prometheus package (promtool and the server) and the SDK when missing. Tests that
# need root or a tool are #[ignore]d in cargo; as root (CI) this runs them too (--include-ignored), else
# it says which it left out.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing Debian's prometheus package (promtool and the server)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The generator refuses any other SDK build than the pinned one: another build may write other JSON.
if ! python3 grafana/generate.py --sdk-installed; then
  echo "== installing grafana/requirements.txt (the Grafana Foundation SDK the dashboards are built with)"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r grafana/requirements.txt
  python3 grafana/generate.py --sdk-installed
fi

echo "== promtool check rules / config"
promtool check rules prometheus/rules/*.yml
promtool check config prometheus/prometheus.yml
echo "== promtool test rules"
promtool test rules prometheus/tests/*.yml
echo "== grafana/generate.py --check"
python3 grafana/generate.py --check

if [ "$(id -u)" -eq 0 ]; then
  echo "== cargo test (as root: the #[ignore]d tests that need root or a tool too)"
  cargo test --locked -- --include-ignored
else
  echo "== cargo test"
  cargo test --locked
  echo
  echo "NOTE: not root, so these #[ignore]d tests did not run (they need root or a tool; CI runs them):"
  cargo test --locked -q -- --ignored --list 2>/dev/null | sed -n 's/: test$//p' | sed 's/^/  /'
  echo "Run them as root with: cargo test --locked -- --ignored"
fi
