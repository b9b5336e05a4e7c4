#!/usr/bin/env bash
# Runs `thrum bench` once per configuration line read from stdin and prints one markdown table
# row each, so docs/performance.md can be regenerated. Each line: a label, then bench args.
#   printf '%s\n' "ort-1x2 -e ort -t 1 --intra-op-threads 2" | scripts/bench-configs.sh zoo:resnet50 10
set -euo pipefail
model=$1 duration=$2
thrum=${THRUM_BIN:-target/release/thrum}
echo "| config | engine | workers × intra | samples/s | P50 ms | P99 ms | first inference ms (max) | RSS peak MiB | CPU cores busy |"
echo "|---|---|---|---|---|---|---|---|---|"
while read -r label args; do
  [[ -z "$label" ]] && continue
  # shellcheck disable=SC2086  # args are word-split on purpose
  "$thrum" bench -q -p "$model" -d "$duration" --json - $args </dev/null | python3 -c '
import json, sys
label = sys.argv[1]
r = json.load(sys.stdin)
res, lat = r["results"], r["results"]["latency_ms"]["total"]
print("| {} | {} | {} × {} | {:.2f} | {:.2f} | {:.2f} | {:.1f} | {:.0f} | {:.2f} |".format(
    label, r["engine"]["name"], r["plan"]["workers"], r["threads"]["engine"]["intra_op"],
    res["samples_per_s"], lat["p50_ms"], lat["p99_ms"], r["timing"]["first_inference"]["max_ms"],
    r["memory"]["rss_peak_run_mib"], r["cpu"]["cores_busy"]))' "$label"
done
