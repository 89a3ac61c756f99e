#!/usr/bin/env bash
# The whole test suite, as CI runs it: promtool's checks and unit tests of the alert rules, then cargo's
# tests (unit, integration against the simulator, dashboards and rules on a real Prometheus, the
# committed dashboards against what grafana/generate.py makes with the pinned Grafana Foundation SDK).
# Installs Debian's prometheus package (promtool and the server), kubectl (kubernetes-client), strace and
# systemd-analyze (systemd) for the deployment files' checks, and the SDK when missing. Tests that
# need a tool or root are #[ignore]d in cargo, so a bare `cargo test` passes with Rust alone; this script
# runs the tool ones always and the root ones as root (CI), and says which it left out.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing Debian's prometheus package (promtool and the server)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The deployment files' checks (tests/it/deploy.rs): kubectl renders deploy/kubernetes (Debian's package
# is kubernetes-client), systemd-analyze verifies deploy/systemd (package systemd; it need not be running),
# strace records the exporter's syscalls for the unit's sandbox.
# A machine where they cannot be installed still runs the rest; the tests left out are listed at the end.
deploy_pkgs=()
command -v kubectl >/dev/null 2>&1 || deploy_pkgs+=(kubernetes-client)
command -v systemd-analyze >/dev/null 2>&1 || deploy_pkgs+=(systemd)
command -v strace >/dev/null 2>&1 || deploy_pkgs+=(strace)
if [ ${#deploy_pkgs[@]} -gt 0 ]; then
  echo "== installing ${deploy_pkgs[*]} (kubectl, systemd-analyze, strace: the checks of deploy/)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq || echo "WARNING: apt-get update failed"
  # One at a time: a package this distribution lacks must not keep the others out.
  for p in "${deploy_pkgs[@]}"; do
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null \
      || echo "WARNING: could not install $p"
  done
fi
tool_skips=()
missing_tools=()
if ! command -v kubectl >/dev/null 2>&1; then
  tool_skips+=(--skip kubectl_kustomize_renders_the_base_wired_together --skip kubectl_kustomize_renders_the_multi_tenant_overlay)
  missing_tools+=("kubectl: deploy::kubectl_kustomize_renders_the_base_wired_together, deploy::kubectl_kustomize_renders_the_multi_tenant_overlay_with_one_shard_per_replica")
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  tool_skips+=(--skip systemd_analyze_verifies_the_unit)
  missing_tools+=("systemd-analyze: deploy::systemd_analyze_verifies_the_unit_and_rates_its_exposure_at_most_1_2")
fi
# strace must also be allowed to trace (ptrace may be forbidden in a container).
if ! command -v systemd-analyze >/dev/null 2>&1 || ! strace -f -o /dev/null true >/dev/null 2>&1; then
  tool_skips+=(--skip the_exporter_makes_no_syscall_and_opens_no_socket)
  missing_tools+=("strace, systemd-analyze: deploy::the_exporter_makes_no_syscall_and_opens_no_socket_the_unit_s_sandbox_forbids")
fi

# The generator refuses any other SDK build than the pinned one: another build may write other JSON.
if ! python3 grafana/generate.py --sdk-installed; then
  echo "== installing grafana/requirements.txt (the Grafana Foundation SDK the dashboards are built with)"
  # PIP_BREAK_SYSTEM_PACKAGES: a Debian system python refuses pip installs (PEP 668); the SDK is one pure-Python package.
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    -r grafana/requirements.txt
  python3 grafana/generate.py --sdk-installed
fi

echo "== promtool check rules / config"
promtool check rules prometheus/rules/*.yml
promtool check config prometheus/prometheus.yml
echo "== promtool test rules"
promtool test rules prometheus/tests/*.yml
echo "== Alertmanager example"
# amtool comes with Debian's prometheus-alertmanager, which this script does not install: without it the
# example is at least parsed, and its inhibit rules must name alerts the rule file has.
if command -v amtool >/dev/null 2>&1; then
  amtool check-config prometheus/alertmanager.yml
fi
python3 - <<'PY'
import re, yaml
am = yaml.safe_load(open("prometheus/alertmanager.yml"))
alerts = set(re.findall(r"^ +- alert: (\S+)", open("prometheus/rules/cec-exporter.rules.yml").read(), re.M))
inhibit = am["inhibit_rules"]
named = set()
for r in inhibit:
    for m in r["source_matchers"] + r["target_matchers"]:
        k, op, v = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', m).groups()
        if k == "alertname":
            named.update(v.split("|"))
assert named <= alerts, f"inhibit_rules name alerts the rule file lacks: {sorted(named - alerts)}"
assert any("CECAuthenticationFailing" in str(r["source_matchers"]) and "CECExporterStale" in str(r["target_matchers"])
           for r in inhibit), "auth failing must inhibit stale"
print(f"prometheus/alertmanager.yml: {len(inhibit)} inhibit rules, every alert they name exists")
PY
echo "== grafana/generate.py --check"
python3 grafana/generate.py --check
echo "== deploy/kubernetes/generate.py --check (the PrometheusRule from prometheus/rules)"
python3 deploy/kubernetes/generate.py --check

# Every #[ignore]d test needs a tool this script has just installed (promtool, prometheus, the SDK,
# kubectl, systemd-analyze, strace), or
# root as well (chattr, a mount namespace): the tool tests always run here, the root ones as root (CI).
root_only=(--skip an_unwritable_state_store --skip a_full_disk)
if [ "$(id -u)" -eq 0 ]; then
  echo "== cargo test (with the #[ignore]d tests that need a tool or root)"
  cargo test --locked -- --include-ignored ${tool_skips[@]+"${tool_skips[@]}"}
else
  echo "== cargo test (with the #[ignore]d tests that need a tool; not root, so not those that need root)"
  cargo test --locked -- --include-ignored "${root_only[@]}" ${tool_skips[@]+"${tool_skips[@]}"}
  echo
  echo "NOTE: not root, so these #[ignore]d tests did not run (they need root; CI runs them):"
  cargo test --locked -q --test it -- --ignored --list 2>/dev/null | sed -n 's/: test$//p' \
    | grep -E 'an_unwritable_state_store|a_full_disk' | sed 's/^/  /'
  echo "Run them as root with: cargo test --locked --test it -- --ignored durable::"
fi
if [ ${#missing_tools[@]} -gt 0 ]; then
  echo
  echo "NOTE: these tools could not be installed or used, so their #[ignore]d tests did not run:"
  printf '  %s\n' "${missing_tools[@]}"
fi
