#!/usr/bin/env bash
# Serving sentence embeddings (docs/performance.md, "Serving embeddings"): `thrum serve` with
# the real all-MiniLM-L6-v2, TEI's POST /embed with one sentence per request (`thrum load
# --text-file`, sentences of scripts/data/sentences.txt in turn), at concurrency 32 with
# token-budget batching (the default) and without it (--max-batch-tokens 0), and at
# concurrency 1; against thrum's own in-process pipeline (`thrum bench --text-file`) at the
# batch the server ran, same engine, same threads. Alternates ROUNDS times. Prints markdown.
#   scripts/bench-text-serve.sh   (THRUM_BIN, ENGINE, DURATION_MS, ROUNDS)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
thrum=${THRUM_BIN:-target/release/thrum}
unset THRUM_BIN # thrum warns about THRUM_* variables it does not know
engine=${ENGINE:-ort}
window=${DURATION_MS:-4000}
rounds=${ROUNDS:-3}
sentences="$here/data/sentences.txt"
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

"$thrum" zoo install all-minilm-l6-v2 >/dev/null

# start_thrum ARGS...: `thrum serve` on a free port; sets http and server_pid.
start_thrum() {
  local out="$work/serve.$RANDOM"
  "$thrum" serve -p zoo:all-minilm-l6-v2 -e "$engine" --http-port 0 --no-grpc \
    --shutdown-grace-s 0 "$@" >"$out" 2>"$out.err" &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 600); do
    if grep -q "listening" "$out" 2>/dev/null; then
      http=$(awk '/listening/ {print $6}' "$out")
      return 0
    fi
    sleep 0.1
  done
  cat "$out.err" >&2
  return 1
}

stop_thrum() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

# load_row LABEL CONCURRENCY: one closed-loop step against the running server, as a row;
# leaves the server's mean batch (inferences ÷ executions) in $work/batch.
load_row() {
  "$thrum" load -m all-minilm-l6-v2 -u "$http" --text-file "$sentences" \
    --concurrency-range "$2" --measurement-interval "$window" -q --json "$work/load.json"
  python3 - "$work/load.json" "$1" "$2" "$work/batch" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["steps"][0]
srv = s.get("server") or {}
batch = srv.get("inferences", 0) / max(srv.get("executions", 0), 1)
open(sys.argv[4], "w").write(str(max(1, round(batch))))
errors = sum(s["errors"].values())
print(f"| {sys.argv[2]} | {sys.argv[3]} | {s['throughput']:.1f} | {s['latency']['p50_us'] / 1000:.2f} | "
      f"{s['latency']['p99_us'] / 1000:.2f} | {batch:.1f} | {errors} |")
PY
}

# bench_row LABEL BATCH: thrum's in-process pipeline at BATCH sentences per call, as a row.
bench_row() {
  "$thrum" bench -e "$engine" -p zoo:all-minilm-l6-v2 --text-file "$sentences" -b "$2" \
    -d $((window * 3 / 1000)) -q --json "$work/bench.json"
  python3 - "$work/bench.json" "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["results"]["latency_ms"]["total"]
print(f"| {sys.argv[2]} | – | {r['results']['samples_per_s']:.1f} | {l['p50_ms']:.2f} | "
      f"{l['p99_ms']:.2f} | {sys.argv[3]} | 0 |")
PY
}

machine_line
echo "engine $engine; server and client on the same cores; one sentence per request; windows of $window ms"
echo
echo "| round: run | concurrency | sentences/s | P50 ms | P99 ms | batch (mean) | errors |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  start_thrum
  load_row "$round: serve, token-budget batching" 32
  batched=$(cat "$work/batch")
  load_row "$round: serve, token-budget batching" 1
  stop_thrum
  start_thrum --max-batch-tokens 0
  load_row "$round: serve, no batching (--max-batch-tokens 0)" 32
  stop_thrum
  bench_row "$round: in-process thrum bench -b $batched" "$batched"
done
