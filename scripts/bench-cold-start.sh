#!/usr/bin/env bash
# What a scale-up costs: time from starting `thrum serve` on a model file to /v2/health/ready
# (model loaded, every worker's warm-up call done), for each zoo model exported to ONNX, on
# tract and ONNX Runtime, 2 workers × 1 intra-op thread. Median of RUNS (3) starts. Markdown.
#   scripts/bench-cold-start.sh   (THRUM_BIN, RUNS to change)
set -euo pipefail
thrum=${THRUM_BIN:-target/release/thrum}
runs=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
echo
echo "| model | file size MiB | engine | time to ready, median of $runs (s) |"
echo "|---|---|---|---|"
for model in $("$thrum" zoo list --json | python3 -c "import json,sys; print(' '.join(m['name'] for m in json.load(sys.stdin)['built']))"); do
  onnx="$work/$model.onnx"
  "$thrum" zoo export "$model" --format onnx -o "$onnx" >/dev/null
  size=$(python3 -c "import os,sys; print('%.1f' % (os.path.getsize(sys.argv[1]) / 2**20))" "$onnx")
  for engine in tract ort; do
    times=()
    for _ in $(seq "$runs"); do
      start=$(date +%s.%N)
      "$thrum" serve -p "$model=$onnx" -e "$engine" --workers 2 --intra-op-threads 1 --http-port 0 --no-grpc \
        --shutdown-grace-s 0 >"$work/out" 2>"$work/err" &
      pid=$!
      until grep -q listening "$work/out" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
        sleep 0.01
      done
      # thrum serve listens once every worker has run its warm-up call: ready = listening.
      http=$(awk '/listening/ {print $6}' "$work/out")
      until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/v2/health/ready")" = 200 ]; do sleep 0.01; done
      end=$(date +%s.%N)
      times+=("$(python3 -c "print($end - $start)")")
      kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
    median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '| zoo:%s | %s | %s | %.2f |\n' "$model" "$size" "$engine" "$median"
  done
done
