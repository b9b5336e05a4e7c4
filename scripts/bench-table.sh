#!/usr/bin/env bash
# Runs `thrum bench` for each (model, workers) pair and prints one markdown table row each,
# so docs/performance.md can be regenerated:
#   scripts/bench-table.sh ENGINE DURATION_S "MODEL..." "WORKERS..." [EXTRA BENCH ARGS...]
# e.g. scripts/bench-table.sh tract 10 "zoo:mlp zoo:resnet50" "1 2"
set -euo pipefail
engine=$1 duration=$2 models=$3 workers=$4
shift 4
thrum=${THRUM_BIN:-target/release/thrum}
echo "| model | engine | workers | samples/s | P50 ms | P99 ms | first inference ms (max) | RSS peak MiB | CPU cores busy |"
echo "|---|---|---|---|---|---|---|---|---|"
for model in $models; do
  for w in $workers; do
    "$thrum" bench -q -e "$engine" -p "$model" -t "$w" -d "$duration" --json - "$@" | python3 -c '
import json, sys
r = json.load(sys.stdin)
res, lat = r["results"], r["results"]["latency_ms"]["total"]
print("| {} | {} | {} | {:.2f} | {:.3f} | {:.3f} | {:.1f} | {:.0f} | {:.2f} |".format(
    r["model"]["path"], r["engine"]["name"], r["plan"]["workers"], res["samples_per_s"],
    lat["p50_ms"], lat["p99_ms"], r["timing"]["first_inference"]["max_ms"],
    r["memory"]["rss_peak_run_mib"], r["cpu"]["cores_busy"]))'
  done
done
