#!/usr/bin/env bash
# Scale-out the honest way on one machine: two `thrum serve` replicas behind nginx (Debian's
# nginx-light, config deploy/nginx/thrum.conf), loaded with `thrum load` through it.
#   1. one replica direct, one replica through nginx, two replicas through nginx (throughput,
#      P99, the balancer's overhead);
#   2. a replica killed (SIGKILL) mid-run: the errors clients see, against the requests that
#      were in flight (at most the concurrency), and the other replica taking the rest.
# On 2 cores the point is correctness, not speed-up. Prints markdown.
#   scripts/bench-scale-out.sh [MODEL]   (default zoo:mlp; THRUM_BIN, WINDOW_MS to change)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
thrum=${THRUM_BIN:-target/release/thrum}
model=${1:-zoo:mlp}
name=${model#zoo:}
window=${WINDOW_MS:-3000}
concurrency=8
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install nginx-light" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# replica N: starts `thrum serve` with one worker; sets url_N and pid_N.
replica() {
  local out="$work/replica$1"
  "$thrum" serve -p "$model" --workers 1 --intra-op-threads 1 --http-port 0 --no-grpc --shutdown-grace-s 0 >"$out" 2>"$out.err" &
  pids+=($!)
  eval "pid_$1=$!"
  for _ in $(seq 600); do
    if grep -q listening "$out" 2>/dev/null; then eval "url_$1=$(awk '/listening/ {print $6}' "$out")"; return 0; fi
    sleep 0.1
  done
  cat "$out.err" >&2; return 1
}

# balancer URL...: starts nginx over the given replicas; sets lb.
balancer() {
  local port dir="$work/nginx.$RANDOM" upstreams=""
  port=$(free_port)
  mkdir -p "$dir"
  for u in "$@"; do upstreams+="        server $u max_fails=1 fail_timeout=30s;"$'\n'; done
  python3 - "$root/deploy/nginx/thrum.conf" "$dir/nginx.conf" "$dir" "127.0.0.1:$port" "$upstreams" <<'PY'
import sys
src, dst, d, listen, ups = sys.argv[1:]
text = open(src).read().replace("@DIR@", d).replace("@LISTEN@", listen).replace("@UPSTREAMS@", ups.rstrip("\n"))
open(dst, "w").write(text)
PY
  nginx -c "$dir/nginx.conf" -p "$dir" &
  pids+=($!)
  nginx_pid=$!
  lb="127.0.0.1:$port"
  for _ in $(seq 100); do
    curl -sf "http://$lb/v2/health/ready" >/dev/null && return 0
    sleep 0.1
  done
  cat "$dir/error.log" >&2; return 1
}

# load URL [ARGS]: prints "throughput p50_us p99_us requests errors-json".
load() {
  local url=$1; shift
  "$thrum" load -q -u "$url" -m "$name" -i http --concurrency-range "$concurrency" --measurement-interval "$window" \
    --max-trials 8 --warmup-ms 1000 "$@" --json - | python3 -c '
import json, sys
s = json.load(sys.stdin)["steps"][0]
print("%.1f %d %d %d %s" % (s["throughput"], s["latency"]["p50_us"], s["latency"]["p99_us"], s["requests"], json.dumps(s["errors"], separators=(",", ":")).replace(" ", "_")))'
}

success() { curl -s "http://$1/v2/models/$name/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["model_stats"][0]["inference_stats"]["success"]["count"])'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nginx -v 2>&1); $(date -u +%F)"
replica 1
replica 2
read -r d_t d_p50 d_p99 d_n d_e <<<"$(load "$url_1")"
balancer "$url_1"
read -r o_t o_p50 o_p99 o_n o_e <<<"$(load "$lb")"
kill -TERM "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true
balancer "$url_1" "$url_2"
read -r t_t t_p50 t_p99 t_n t_e <<<"$(load "$lb")"
echo
echo "### $model, 1 worker × 1 intra-op thread per replica, concurrency $concurrency, HTTP binary tensors"
echo
echo "| setup | infer/s | P50 µs | P99 µs | errors | vs one replica direct |"
echo "|---|---|---|---|---|---|"
python3 - "$d_t $d_p50 $d_p99 $d_e" "$o_t $o_p50 $o_p99 $o_e" "$t_t $t_p50 $t_p99 $t_e" <<'PY'
import sys
rows = [r.split() for r in sys.argv[1:]]
base = float(rows[0][0])
for label, r in zip(["one replica, direct", "one replica through nginx", "two replicas through nginx"], rows):
    print(f"| {label} | {r[0]} | {r[1]} | {r[2]} | {r[3]} | {float(r[0]) / base:.2f}x |")
PY

# Kill replica 1 five seconds into a 3 × 10 s measurement through the balancer.
before1=$(success "$url_1"); before2=$(success "$url_2")
( sleep 6; kill -KILL "$pid_1" ) &
killer=$!
read -r k_t k_p50 k_p99 k_n k_e <<<"$("$thrum" load -q -u "$lb" -m "$name" -i http --concurrency-range "$concurrency" \
  --measurement-interval 10000 --max-trials 3 --stability-percentage 100 --warmup-ms 1000 --json - | python3 -c '
import json, sys
s = json.load(sys.stdin)["steps"][0]
print("%.1f %d %d %d %s" % (s["throughput"], s["latency"]["p50_us"], s["latency"]["p99_us"], s["requests"], json.dumps(s["errors"], separators=(",", ":")).replace(" ", "_")))')"
wait "$killer" || true
after2=$(success "$url_2")
echo
echo "### Replica 1 killed (SIGKILL) 5 s into a 30 s run through nginx"
echo
python3 - "$k_t" "$k_n" "$k_e" "$before2" "$after2" "$concurrency" <<'PY'
import json, sys
t, n, errors, b2, a2, c = sys.argv[1:]
errors = json.loads(errors)
failed = sum(errors.values())
print(f"- answered with outputs: {n} requests ({t} infer/s over the run); failed: {failed} ({errors or 'none'})")
print(f"- requests in flight at the kill: at most {c} (the concurrency); failed ≤ in flight: {'yes' if failed <= int(c) else 'NO'}")
print(f"- replica 2 answered {int(a2) - int(b2)} requests during the run (warm-up included), the rest of the run after the kill")
PY
