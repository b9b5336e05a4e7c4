#!/usr/bin/env bash
# The serving checks of the hardening work (docs/performance.md, "thrum serve under abuse"),
# each printing markdown and the figures it found:
#   grpc     REST with binary tensors against gRPC on zoo:mlp at concurrency 8, alternating
#            ROUNDS times, with the CPU seconds the server and the client each spent per 1000
#            requests (from /proc), to tell which side costs what;
#   rss      the server's resident memory over DURATION s of load nobody scrapes (/metrics is
#            never read), sampled every 10 s;
#   soak     DURATION s of open-loop load at 4× the server's measured capacity: every admitted
#            request answered, the rest refused at once (503), resident memory, and P99 of the
#            admitted ones against queue capacity × service time;
#   probes   /v2/health/live latency while 3,000 clients stall in their bodies and three
#            60 MiB JSON requests are in flight (scripts/abuse.py).
# Server and client each get a core of their own (taskset) where the machine has two, unless
# PIN=0. CPU_LIMIT=0.25 also caps the server at a quarter of its core with a CFS quota (a
# cgroup, as a Kubernetes pod's `limits.cpu: 250m` does; period 10 ms), so that one core of
# client can offer it 4× what it answers (needs root and the cgroup cpu controller).
#   scripts/bench-hardening.sh grpc|rss|soak|probes   (THRUM_BIN, DURATION, ROUNDS, PIN, CPU_LIMIT)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
thrum=${THRUM_BIN:-target/release/thrum}
duration=${DURATION:-600}
rounds=${ROUNDS:-3}
what=${1:?grpc, rss, soak or probes}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
  [ -n "$cgroup" ] && rmdir "$cgroup" 2>/dev/null || true
}
cgroup=
trap cleanup EXIT

cores=$(nproc)
server_cpu=""
client_cpu=""
# PIN=0: server and client share every core, as in the issue's measurement.
if [ "$cores" -ge 2 ] && [ "${PIN:-1}" = 1 ]; then
  server_cpu="taskset -c 0"
  client_cpu="taskset -c 1"
fi

# start_thrum ARGS...: `thrum serve` on free ports; sets http, grpc and server_pid.
start_thrum() {
  local out="$work/serve.$RANDOM"
  $server_cpu "$thrum" serve --http-port 0 --grpc-port 0 --shutdown-grace-s 0 "$@" >"$out" 2>"$out.err" &
  server_pid=$!
  pids+=("$server_pid")
  [ -n "${CPU_LIMIT:-}" ] && limit_cpu "$server_pid"
  for _ in $(seq 600); do
    if grep -q "listening" "$out" 2>/dev/null; then
      http=$(awk '/listening/ {print $6}' "$out"); grpc=$(awk '/listening/ {print $8}' "$out")
      return 0
    fi
    sleep 0.1
  done
  cat "$out.err" >&2
  return 1
}

# limit_cpu PID: a CFS quota of CPU_LIMIT cores (period 10 ms) on the process, cgroup v2 or v1.
limit_cpu() {
  local quota
  quota=$(python3 -c "import sys; print(round(float(sys.argv[1]) * 10000))" "$CPU_LIMIT")
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    cgroup=/sys/fs/cgroup/thrum-bench.$$
    mkdir "$cgroup"
    echo "$quota 10000" >"$cgroup/cpu.max"
  else
    cgroup=/sys/fs/cgroup/cpu/thrum-bench.$$
    mkdir "$cgroup"
    echo 10000 >"$cgroup/cpu.cfs_period_us"
    echo "$quota" >"$cgroup/cpu.cfs_quota_us"
  fi
  echo "$1" >"$cgroup/cgroup.procs"
  echo "server limited to $CPU_LIMIT of a core (CFS quota $quota µs per 10 ms, $cgroup)"
}

# cpu_s PID: user + system CPU seconds of a process so far.
cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

rss_mib() {
  awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"
}

machine_line

case "$what" in
grpc)
  start_thrum -p zoo:mlp --workers 1 --intra-op-threads 1
  echo
  echo "| round | protocol | infer/s | server CPU s / 1000 req | client CPU s / 1000 req | P50 µs | P99 µs |"
  echo "|---|---|---|---|---|---|---|"
  for round in $(seq "$rounds"); do
    for way in http grpc grpc-streaming; do
      url=$http
      protocol=${way%-streaming}
      stream=()
      [ "$protocol" = grpc ] && url=$grpc
      [ "$way" = grpc-streaming ] && stream=(--streaming)
      s0=$(cpu_s "$server_pid")
      $client_cpu "$thrum" load -m mlp -u "$url" -i "$protocol" "${stream[@]}" --concurrency-range 8 \
        --measurement-interval 3000 --max-trials 6 --warmup-ms 1000 --json "$work/load.json" -q &
      client=$!
      c0=0
      c1=$c0
      while kill -0 "$client" 2>/dev/null; do c1=$(cpu_s "$client" 2>/dev/null || echo "$c1"); sleep 0.2; done
      wait "$client"
      s1=$(cpu_s "$server_pid")
      python3 - "$work/load.json" "$round" "$way" "$s0" "$s1" "$c1" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
step = report["steps"][0]
round_, protocol, s0, s1, c1 = sys.argv[2], sys.argv[3], *map(float, sys.argv[4:7])
total = step["total_answered"] + step["total_failed"]
print(f"| {round_} | {protocol} | {step['throughput']:.0f} | {1000 * (s1 - s0) / total:.3f} | "
      f"{1000 * c1 / total:.3f} | {step['latency']['p50_us']} | {step['latency']['p99_us']} |")
PY
    done
  done
  ;;
rss)
  start_thrum -p zoo:mlp
  echo
  echo "load: thrum load -m mlp --concurrency-range 4 for ${duration} s, /metrics never scraped"
  $client_cpu "$thrum" load -m mlp -u "$http" --concurrency-range 4 --warmup-ms 0 \
    --measurement-interval $((duration * 1000 / 10)) --max-trials 10 --stability-percentage 0.001 \
    --json "$work/load.json" -q &
  client=$!
  echo
  echo "| s | server RSS MiB |"
  echo "|---|---|"
  start=$SECONDS
  while kill -0 "$client" 2>/dev/null; do
    echo "| $((SECONDS - start)) | $(rss_mib "$server_pid") |"
    sleep 10
  done
  wait "$client" || true
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('requests answered:', sum(s['total_answered'] for s in r['steps']))" "$work/load.json"
  ;;
soak)
  start_thrum -p zoo:mlp --workers 1 --intra-op-threads 1
  cap0=$(cpu_s "$server_pid")
  $client_cpu "$thrum" load -m mlp -u "$http" --concurrency-range 8 --measurement-interval 3000 \
    --json "$work/capacity.json" -q
  cap1=$(cpu_s "$server_pid")
  capacity=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['steps'][0]['throughput']))" "$work/capacity.json")
  service_us=$(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['steps'][0]['server']; print(s['compute_infer_us'] + s['compute_input_us'] + s['compute_output_us'])" "$work/capacity.json")
  rate=$((capacity * 4))
  stats() { curl -s "http://$http/v2/models/mlp/stats"; }
  curl -s "http://$http/metrics" >"$work/metrics.before"
  before=$(stats)
  soak0=$(cpu_s "$server_pid")
  echo
  echo "capacity (closed loop, concurrency 8): $capacity infer/s, service time ${service_us} µs; soak at $rate/s for ${duration} s"
  $client_cpu "$thrum" load -m mlp -u "$http" --request-rate-range "$rate" --max-threads 1024 \
    --warmup-ms 0 --measurement-interval $((duration * 1000 / 10)) --max-trials 10 \
    --stability-percentage 0.001 --json "$work/soak.json" -q &
  client=$!
  echo
  echo "| s | server RSS MiB | open file descriptors |"
  echo "|---|---|---|"
  start=$SECONDS
  : >"$work/rss"
  while kill -0 "$client" 2>/dev/null; do
    r=$(rss_mib "$server_pid")
    echo "$r" >>"$work/rss"
    t=$((SECONDS - start))
    if [ $((t % 60)) -lt 5 ]; then
      echo "| $t | $r | $(ls "/proc/$server_pid/fd" | wc -l) |"
    fi
    sleep 5
  done
  wait "$client" || true
  soak1=$(cpu_s "$server_pid")
  after=$(stats)
  curl -s "http://$http/metrics" >"$work/metrics.after"
  python3 - "$work/soak.json" "$before" "$after" "$work/rss" "$service_us" "$capacity" \
    "$work/metrics.before" "$work/metrics.after" "$cap0" "$cap1" "$soak0" "$soak1" \
    "$work/capacity.json" <<'PY'
import json, re, sys
report = json.load(open(sys.argv[1]))
before, after = json.loads(sys.argv[2]), json.loads(sys.argv[3])
rss = [float(x) for x in open(sys.argv[4]).read().split()]
service_us, capacity = float(sys.argv[5]), float(sys.argv[6])

def metrics(path):
    out = {}
    for line in open(path):
        m = re.match(r'^(thrum_\w+)\{([^}]*)\} (\S+)$', line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out

mb, ma = metrics(sys.argv[7]), metrics(sys.argv[8])
def delta(name, labels):
    return ma.get((name, labels), 0) - mb.get((name, labels), 0)

def p99_ms(name):
    """The upper bound of the bucket that holds the 99th percentile, from the deltas."""
    buckets = sorted(
        (float(re.search(r'le="([^"]+)"', l).group(1)), ma[(n, l)] - mb.get((n, l), 0))
        for (n, l) in ma if n == name + "_bucket" and 'model="mlp"' in l)
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= 0.99 * total:
            return le * 1000, total
    return float("inf"), total

def count(stats, k):
    return stats["model_stats"][0]["inference_stats"][k]["count"]
answered = sum(s["total_answered"] for s in report["steps"])
failed = sum(s["total_failed"] for s in report["steps"])
rejected = delta("thrum_inference_request_failure", 'model="mlp",reason="REJECTED"')
queue_p99, _ = p99_ms("thrum_inference_queue_duration_seconds")
infer_p99, _ = p99_ms("thrum_inference_compute_infer_duration_seconds")
p99 = max(s["latency"]["p99_us"] for s in report["steps"])
seconds = sum(s["seconds"] for s in report["steps"])
rate = sum(s["request_rate"] * s["seconds"] for s in report["steps"]) / seconds
late = max(s.get("delayed_fraction") or 0 for s in report["steps"])
first_minute = rss[: 12]
print()
print("| sent/s (achieved) | × capacity | answered 200 | server successes | server failures | client failures | of them refused 503 by the server (REJECTED) | server P99 queue ms | server P99 infer ms | 64 × compute ms | 64 ÷ capacity ms | 64 ÷ answered/s ms | client P99 of answered ms | RSS after 1 min / last / max MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| {rate:.0f} | {rate / capacity:.1f} | {answered} | {count(after, 'success') - count(before, 'success')} | "
      f"{count(after, 'fail') - count(before, 'fail')} | {failed} | {rejected:.0f} | ≤ {queue_p99:g} | ≤ {infer_p99:g} | "
      f"{64 * service_us / 1000:.2f} | {64000 / capacity:.2f} | {64000 * seconds / answered:.2f} | {p99 / 1000:.1f} | {first_minute[-1]} / {rss[-1]} / {max(rss)} |")
print(f"(requests that started late, the client's own limit: {100 * late:.1f} %)")
# What a refusal costs the server: the soak's CPU less what its answered requests cost at the
# closed loop's CPU per request, over the refusals. A server can refuse at most 1/refusal
# requests/s; offered more, the rest wait in the sockets.
cap = json.load(open(sys.argv[13]))["steps"][0]
cap_requests = cap["total_answered"] + cap["total_failed"]
cap_cpu, soak_cpu = float(sys.argv[10]) - float(sys.argv[9]), float(sys.argv[12]) - float(sys.argv[11])
per_answer = cap_cpu / cap_requests
refused = failed
per_refusal = (soak_cpu - answered * per_answer) / refused if refused else float("nan")
print(f"server CPU: {1e6 * per_answer:.1f} µs per answered request (closed loop), "
      f"{1e6 * per_refusal:.1f} µs per refusal (soak: {soak_cpu:.1f} CPU s); refusing everything it "
      f"could take {1 / per_refusal:.0f}/s = {1 / per_refusal / capacity:.1f}× capacity")
PY
  ;;
probes)
  start_thrum -p zoo:mlp
  $client_cpu python3 "$here/abuse.py" "$http"
  echo "server RSS after: $(rss_mib "$server_pid") MiB"
  ;;
*)
  echo "unknown check $what: grpc, rss, soak or probes" >&2
  exit 2
  ;;
esac
