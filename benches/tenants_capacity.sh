#!/usr/bin/env bash
# What one replica costs per tenant (the README's "What one replica handles"): N tenants on one
# simulator, each reading the same 10 calls/s at the default --poll.interval and --poll.lookback; the
# exporter's CPU, CEC requests and records read over 60 s of steady state after the backfill, its
# RSS, and one /metrics scrape. Needs `cargo build --release` first. NS="1 10 50" picks the counts.
set -euo pipefail
B=${B:-$(cd "$(dirname "$0")/.." && pwd)/target/release/cec-exporter}
D=$(mktemp -d)
cd "$D"
echo demo-app-secret > s
chmod 600 s
"$B" simulate --listen 127.0.0.1:18191 --seed 3 --calls-per-minute 600 --history 10m --log.level error >/dev/null 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null; rm -rf "$D"' EXIT
sleep 1
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sum() { curl -s localhost:18192/metrics | awk -v re="$1" '$0 ~ re {s += $2} END {print s + 0}'; }
for N in ${NS:-1 10 50}; do
  {
    echo "global:"
    echo "  cec: {url: 'http://127.0.0.1:18191', app_key: demo-app-key, app_secret_file: $D/s}"
    echo "  poll: {backfill: 5m}"
    echo "tenants:"
    for i in $(seq 1 "$N"); do echo "  - name: t$i"; done
  } > "t$N.yml"
  "$B" --config.file "t$N.yml" --web.listen-address 127.0.0.1:18192 --state.path "$D/state$N" --log.level warn 2> "exp$N.log" &
  P=$!
  sleep 45
  c0=$(cpu $P); r0=$(sum '^cec_exporter_api_requests_total[{]tenant=.*query'); f0=$(sum '^cec_exporter_records_fetched_total')
  sleep 60
  c1=$(cpu $P); r1=$(sum '^cec_exporter_api_requests_total[{]tenant=.*query'); f1=$(sum '^cec_exporter_records_fetched_total')
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$P/status")
  t0=$(date +%s%N); curl -s localhost:18192/metrics > "m$N.txt"; t1=$(date +%s%N)
  up=$(grep -c '^cec_up{tenant=.*} 1' "m$N.txt" || true)
  awk -v n="$N" -v up="$up" -v c="$((c1 - c0))" -v tick="$tick" -v r="$((r1 - r0))" -v f="$((f1 - f0))" \
      -v rss="$rss" -v ms="$(((t1 - t0) / 1000000))" -v bytes="$(wc -c < "m$N.txt")" 'BEGIN {
    printf "tenants=%d up=%d cpu=%.2f%% requests_per_s=%.1f records_per_s=%.0f rss=%.1fMiB scrape=%dms scrape_bytes=%d\n",
      n, up, c * 100 / tick / 60, r / 60, f / 60, rss / 1024, ms, bytes }'
  kill $P
  wait $P 2>/dev/null || true
done
