#!/usr/bin/env bash
# thrum serve's benchmarks (docs/performance.md), each against a peer measured in the same run:
#   1. HTTP with binary tensors on zoo:resnet50 (ort, tract) at concurrency 8 vs `thrum bench`
#      in-process with the same workers;
#   2. vs MLServer 1.7 serving the same ONNX file through onnxruntime (scripts/mlserver/): zoo:mlp
#      and zoo:resnet50 at concurrency 8 over REST JSON and gRPC (MLServer's REST has no binary
#      tensors), and P50 at concurrency 1 on zoo:mlp;
#   3. dynamic batching on zoo:mlp and zoo:transformer (tract, ort) at concurrency 64, on vs off,
#      with the server's own time per request in the engine.
# Load comes from `thrum load`. Prints markdown tables.
#   scripts/bench-serve.sh [all|inprocess|mlserver|batching]   (THRUM_BIN, WINDOW_MS to change)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
thrum=${THRUM_BIN:-target/release/thrum}
window=${WINDOW_MS:-3000}
what=${1:-all}
work=$(mktemp -d)
mlserver="$(thrum_home)/testdata/venv-mlserver/bin/mlserver"
mlpython="$(thrum_home)/testdata/venv-mlserver/bin/python"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_thrum ARGS...: starts `thrum serve` on free ports; sets http= and grpc= (host:port).
start_thrum() {
  local out="$work/serve.$RANDOM"
  "$thrum" serve --http-port 0 --grpc-port 0 --shutdown-grace-s 0 "$@" >"$out" 2>"$out.err" &
  pids+=($!)
  server_pid=$!
  for _ in $(seq 600); do
    if grep -q "listening" "$out" 2>/dev/null; then
      http=$(awk '/listening/ {print $6}' "$out"); grpc=$(awk '/listening/ {print $8}' "$out")
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$out.err" >&2; return 1; }
    sleep 0.1
  done
  echo "thrum serve did not start" >&2; return 1
}

# start_mlserver MODEL.onnx NAME WORKERS: sets http= and grpc=.
start_mlserver() {
  local hp gp mp dir="$work/mls.$RANDOM"
  hp=$(free_port); gp=$(free_port); mp=$(free_port)
  "$mlpython" "$here/mlserver/repo.py" "$1" "$2" "$dir" --http-port "$hp" --grpc-port "$gp" \
    --metrics-port "$mp" --workers "$3" --intra 1
  (cd "$dir" && exec "$mlserver" start .) >"$dir.log" 2>&1 &
  pids+=($!)
  server_pid=$!
  http="127.0.0.1:$hp" grpc="127.0.0.1:$gp"
  for _ in $(seq 1200); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/v2/models/$2/ready")" = 200 ]; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$dir.log" >&2; return 1; }
    sleep 0.1
  done
  echo "mlserver did not start" >&2; return 1
}

stop() { kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; }

# load URL MODEL PROTOCOL CONCURRENCY: prints "throughput p50_us p99_us errors".
load() {
  "$thrum" load -q -u "$1" -m "$2" -i "$3" --concurrency-range "$4" --measurement-interval "$window" \
    --max-trials 8 --warmup-ms 1500 --json - | python3 -c '
import json, sys
s = json.load(sys.stdin)["steps"][0]
errors = sum(s["errors"].values())
print("%.1f %d %d %d%s" % (s["throughput"], s["latency"]["p50_us"], s["latency"]["p99_us"], errors, "" if s["stable"] else " unstable"))'
}

# load_split URL MODEL CONCURRENCY (HTTP binary): "throughput p50_us p99_us queue_us infer_us".
load_split() {
  "$thrum" load -q -u "$1" -m "$2" -i http --concurrency-range "$3" --measurement-interval "$window" \
    --max-trials 8 --warmup-ms 1500 --json - | python3 -c '
import json, sys
s = json.load(sys.stdin)["steps"][0]
v = s["server"]
print("%.1f %d %d %.1f %.1f%s" % (s["throughput"], s["latency"]["p50_us"], s["latency"]["p99_us"], v["queue_us"], v["compute_infer_us"], "" if s["stable"] else " unstable"))'
}

export_onnx() { [ -f "$work/$1.onnx" ] || "$thrum" zoo export "$1" --format onnx -o "$work/$1.onnx" >/dev/null; echo "$work/$1.onnx"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"

if [ "$what" = all ] || [ "$what" = inprocess ]; then
  echo
  echo "### thrum serve (HTTP, binary tensors) vs thrum bench in-process: zoo:resnet50, 2 workers × 1 intra-op thread"
  echo
  echo "| engine | thrum bench samples/s | thrum serve infer/s (c=8) | serve / bench | serve P50 ms | serve P99 ms |"
  echo "|---|---|---|---|---|---|"
  for engine in ort tract; do
    bench=$("$thrum" bench -q -e "$engine" -p zoo:resnet50 -t 2 --intra-op-threads 1 -d 15 -w 1 --json - |
      python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["results"]["samples_per_s"])')
    start_thrum -p zoo:resnet50 -e "$engine" --workers 2 --intra-op-threads 1 --no-grpc
    read -r tput p50 p99 errors rest <<<"$(load "$http" resnet50 http 8)"
    stop
    python3 -c 'import sys; e,b,t,p50,p99,r=sys.argv[1:]; print("| %s | %s | %s | %.3fx | %.1f | %.1f |%s" % (e, b, t, float(t)/float(b), int(p50)/1e3, int(p99)/1e3, r))' \
      "$engine" "$bench" "$tput" "$p50" "$p99" "${rest:+ ($rest)}"
  done
fi

if [ "$what" = all ] || [ "$what" = mlserver ]; then
  echo
  echo "### thrum serve (ort) vs MLServer 1.7.1 + onnxruntime, same ONNX file, 2 workers × 1 intra-op thread each"
  echo
  echo "MLServer: parallel_workers 2 (two processes, one onnxruntime session each) and 0 (inference on its event loop); its best is the peer."
  echo
  echo "| model | protocol | concurrency | thrum infer/s | MLServer pw=2 infer/s | MLServer pw=0 infer/s | thrum / best MLServer | thrum P50 µs | MLServer P50 µs (best) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for model in mlp resnet50; do
    onnx=$(export_onnx "$model")
    declare -A res=()
    start_thrum -p "$model=$onnx" -e ort --workers 2 --intra-op-threads 1
    for proto in http-json grpc; do
      url=$http; [ "$proto" = grpc ] && url=$grpc
      for c in 8 1; do
        [ "$model" = resnet50 ] && [ "$c" = 1 ] && continue
        res[thrum,$proto,$c]=$(load "$url" "$model" "$proto" "$c")
      done
    done
    stop
    for pw in 2 0; do
      start_mlserver "$onnx" "$model" "$pw"
      for proto in http-json grpc; do
        url=$http; [ "$proto" = grpc ] && url=$grpc
        for c in 8 1; do
          [ "$model" = resnet50 ] && [ "$c" = 1 ] && continue
          res[mls$pw,$proto,$c]=$(load "$url" "$model" "$proto" "$c")
        done
      done
      stop
    done
    for proto in http-json grpc; do
      for c in 8 1; do
        [ "$model" = resnet50 ] && [ "$c" = 1 ] && continue
        python3 - "$model" "$proto" "$c" "${res[thrum,$proto,$c]}" "${res[mls2,$proto,$c]}" "${res[mls0,$proto,$c]}" <<'PY'
import sys
model, proto, c, t, m2, m0 = sys.argv[1:]
t, m2, m0 = t.split(), m2.split(), m0.split()
best = m2 if float(m2[0]) >= float(m0[0]) else m0
flags = " ".join(x for r, n in ((t, "thrum"), (m2, "pw2"), (m0, "pw0")) for x in ([f"{n}: {r[3]} errors"] if r[3] != "0" else []) + ([f"{n} unstable"] if len(r) > 4 else []))
print(f"| zoo:{model} | {proto} | {c} | {t[0]} | {m2[0]} | {m0[0]} | {float(t[0]) / float(best[0]):.2f}x | {t[1]} | {best[1]} |" + (f" {flags}" if flags else ""))
PY
      done
    done
    unset res
  done
fi

if [ "$what" = all ] || [ "$what" = batching ]; then
  echo
  echo "### Dynamic batching at concurrency 64 (HTTP, binary tensors; 2 workers × 1 intra-op thread)"
  echo
  echo "Server columns: the server's own statistics per request (thrum load's split): time in the engine, and the rest of the server's work is outside these."
  echo
  echo "| model | engine | batching | infer/s | P50 ms | P99 ms | with / without | server queue µs/req | server infer µs/req |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for model in mlp transformer; do
    for engine in tract ort; do
      start_thrum -p "zoo:$model" -e "$engine" --workers 2 --intra-op-threads 1 --no-grpc
      off=$(load_split "$http" "$model" 64)
      stop
      start_thrum -p "zoo:$model" -e "$engine" --workers 2 --intra-op-threads 1 --no-grpc --max-batch-size 32 --max-queue-delay-us 2000
      on=$(load_split "$http" "$model" 64)
      stop
      python3 - "$model" "$engine" "$off" "$on" <<'PY'
import sys
model, engine, off, on = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
for label, r in (("off", off), ("max 32, 2 ms", on)):
    ratio = f"{float(on[0]) / float(off[0]):.2f}x" if r is on else ""
    print(f"| zoo:{model} | {engine} | {label} | {r[0]} | {int(r[1]) / 1e3:.2f} | {int(r[2]) / 1e3:.2f} | {ratio} | {r[3]} | {r[4]} |" + (" unstable" if len(r) > 5 else ""))
PY
    done
  done
fi
