#!/usr/bin/env bash
# thrum load's own cost: the highest request rate it drives against a trivial v2 endpoint, next
# to wrk (Debian's `wrk`) on the same endpoint in the same run (docs/performance.md).
# The endpoint is nginx (Debian's nginx-light) answering a v2 model's metadata and every
# inference with a fixed JSON body, so the server costs next to nothing. nginx runs on CPU 0,
# the client on CPU 1 (taskset); each client gets the same concurrency and one thread. Besides
# the rate, each client's CPU time is measured: requests per client CPU-second is the cost that
# does not depend on who saturates first.
#   scripts/bench-load-client.sh [CONCURRENCY...]   (default 1 16; THRUM_BIN, SECONDS_EACH)
set -euo pipefail
thrum=${THRUM_BIN:-target/release/thrum}
seconds=${SECONDS_EACH:-10}
levels=("${@:-1 16}")
read -r -a levels <<<"${levels[*]}"
work=$(mktemp -d)
nginx_pid=
cleanup() {
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install nginx-light wrk util-linux" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server on one, client on the other)" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/error.log warn;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    keepalive_requests 1000000;
    default_type application/json;
    server {
        listen 127.0.0.1:$port;
        location = /v2 { return 200 '{"name":"static","version":"1","extensions":[]}'; }
        location = /v2/models/m { return 200 '{"name":"m","versions":["1"],"platform":"static","inputs":[{"name":"x","datatype":"FP32","shape":[1,4]}],"outputs":[{"name":"y","datatype":"FP32","shape":[1,4]}]}'; }
        location = /v2/models/m/ready { return 200 ''; }
        location = /v2/models/m/infer { return 200 '{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"data":[0.5,0.25,0.125,1.0]}]}'; }
    }
}
CONF
taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2" >/dev/null && break; sleep 0.1; done

# The request thrum load sends for this model (-i http-json, --input-data zero), sent by wrk too.
body='{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0.0,0.0,0.0,0.0]}]}'
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA

# cpu CMD...: runs CMD, prints its stdout, then "cpu SECONDS" (user + system of the children).
cpu() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys
out = subprocess.run(sys.argv[1:], check=True, stdout=subprocess.PIPE, text=True).stdout
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(out)
print("cpu %.3f" % (r.ru_utime + r.ru_stime))
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
echo
echo "| concurrency | wrk req/s | thrum load req/s | thrum load / wrk | wrk req per CPU-s | thrum load req per CPU-s | per CPU-s ratio |"
echo "|---|---|---|---|---|---|---|"
for c in "${levels[@]}"; do
  wrk_out=$(cpu taskset -c 1 wrk -t1 -c"$c" -d"${seconds}s" -s "$work/post.lua" "http://127.0.0.1:$port/v2/models/m/infer")
  wrk_rate=$(awk '/Requests\/sec/ {print $2}' <<<"$wrk_out")
  wrk_total=$(awk '/requests in/ {print $1}' <<<"$wrk_out")
  wrk_cpu=$(awk '/^cpu / {print $2}' <<<"$wrk_out")
  # Windows of SECONDS_EACH/3 so that its measured time matches wrk's.
  window=$((seconds * 1000 / 3))
  load_out=$(cpu taskset -c 1 "$thrum" load -q -u "127.0.0.1:$port" -m m -i http-json --input-data zero \
    --concurrency-range "$c" --measurement-interval "$window" --max-trials 3 --stability-percentage 100 \
    --warmup-ms 500 --json -)
  load_cpu=$(awk '/^cpu / {print $2}' <<<"$load_out")
  python3 - "$c" "$wrk_rate" "$wrk_total" "$wrk_cpu" "$load_cpu" <<PY
import json, sys
c, wrk_rate, wrk_total, wrk_cpu, load_cpu = sys.argv[1:]
report = json.loads('''$(grep -v '^cpu ' <<<"$load_out")''')
s = report["steps"][0]
errors = sum(s["errors"].values())
load_rate = s["requests"] / s["seconds"]
load_total = s["total_answered"] + s["total_failed"]
w, l = float(wrk_rate), load_rate
wc, lc = float(wrk_total) / float(wrk_cpu), load_total / float(load_cpu)
note = f" ({errors} errors)" if errors else ""
print(f"| {c} | {w:.0f} | {l:.0f} | {l / w:.2f}x | {wc:.0f} | {lc:.0f} | {lc / wc:.2f}x |{note}")
PY
done
