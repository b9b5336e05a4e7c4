#!/usr/bin/env bash
# thrum tune's acceptance measurements, in one session on one machine:
#  1. the climb (default search) and an exhaustive sweep of the same space, each timed;
#  2. their picks re-measured alternately (thrum bench --config), $ROUNDS rounds (default 5):
#     climb / exhaustive;
#  3. the climb's pick against hand-tuned ONNX Runtime Python (scripts/ort_python.py, the best
#     of workers × intra 1x1, 1x2, 2x1 at batch 1 and the pick's batch), in the same rounds.
# Prints markdown for docs/performance.md.
#   scripts/bench-tune.sh MODEL OUT_DIR DURATION_S [THRUM TUNE ARGS...]
# e.g. scripts/bench-tune.sh light_resnet50.onnx /tmp/tune-lr50 10 -e tract,ort --batch 1
# MODEL is a .onnx file or zoo:NAME (exported to OUT_DIR/NAME.onnx for the Python peer).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
model=$1 out=$2 duration=$3
shift 3
thrum=${THRUM_BIN:-target/release/thrum}
python="$(thrum_home)/testdata/venv-ort/bin/python"
mkdir -p "$out"
onnx=$model
if [[ $model == zoo:* ]]; then
  onnx="$out/${model#zoo:}.onnx"
  "$thrum" zoo export "${model#zoo:}" -o "$onnx" >/dev/null
fi
run_tune() {
  local name=$1
  shift
  local start=$SECONDS
  "$thrum" tune -p "$model" -q -o "$out/$name" "$@" >"$out/$name.txt" 2>&1 || true
  echo $((SECONDS - start))
}
climb_s=$(run_tune climb --search climb "$@")
exhaustive_s=$(run_tune exhaustive --search exhaustive --budget 2h "$@")
bench() { "$thrum" bench -q -d "$duration" --json - --config "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"]["samples_per_s"])'; }
python3 - "$out" "$climb_s" "$exhaustive_s" <<'PY'
import json, sys
out, climb_s, exh_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
for name in ("climb", "exhaustive"):
    r = json.load(open(f"{out}/{name}/tune.json"))
    o = r["outcome"]
    w = o["winner"]
    print(f"{name}: {o['distinct_measured']} of {o['space_size']} measured, {len(o['trials'])} runs; pick {w[0]['engine']} {w[0]['workers']}x{w[0]['intra']} b{w[0]['batch']} {w[0]['predictor']} {w[0]['options']}: {w[1]['samples_per_s']:.2f} samples/s")
    v = o.get("versus_default")
    if v:
        print(f"  vs default {v['default']['engine']}: {v['speedup']:.2f}x (runs {v['band'][0]:.2f}x to {v['band'][1]:.2f}x)")
print(f"wall: climb {climb_s:.0f} s, exhaustive {exh_s:.0f} s, ratio {climb_s / exh_s:.2f}")
# The children's wall time by phase: finding the pick (explore, probe, final) and the runs
# against the default that both searches end with.
phases = {}
for name in ("climb", "exhaustive"):
    trials = json.load(open(f"{out}/{name}/tune.json"))["outcome"]["trials"]
    by = {}
    for t in trials:
        by[t["phase"]] = by.get(t["phase"], 0.0) + t["wall_s"]
    phases[name] = by
    print(f"{name} phases: " + ", ".join(f"{p} {s:.0f} s" for p, s in sorted(by.items())))
pick = {n: sum(s for p, s in by.items() if p != "confirm") for n, by in phases.items()}
print(f"to the pick (explore + probe + final): climb {pick['climb']:.0f} s, exhaustive {pick['exhaustive']:.0f} s, ratio {pick['climb'] / pick['exhaustive']:.2f}")
PY
py_bench() {
  "$python" "$here/ort_python.py" bench "$onnx" --workers "$1" --intra "$2" --batch "$3" --duration "$duration" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_s"])'
}
batch=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outcome"]["winner"][0]["batch"])' "$out/climb/tune.json")
best_py=0 best=""
for cfg in 1x1 1x2 2x1; do
  for b in $(printf '%s\n' 1 "$batch" | sort -u); do
    py=$(py_bench "${cfg%x*}" "${cfg#*x}" "$b")
    echo "ORT Python $cfg batch $b: $py samples/s"
    if python3 -c "import sys; sys.exit(0 if $py > $best_py else 1)"; then best_py=$py best="${cfg%x*} ${cfg#*x} $b"; fi
  done
done
rm -f "$out/rounds.txt"
echo "alternating re-measurement, $duration s each (ORT Python at its best: workers intra batch = $best):"
for round in $(seq "${ROUNDS:-5}"); do
  c=$(bench "$out/climb/thrum.toml")
  e=$(bench "$out/exhaustive/thrum.toml")
  # shellcheck disable=SC2086
  p=$(py_bench $best)
  python3 -c "print(f'round $round: climb {$c:.2f}, exhaustive {$e:.2f}, ORT Python {$p:.2f} samples/s: climb/exhaustive {$c/$e:.3f}, climb/Python {$c/$p:.3f}')"
  echo "$c $e $p" >>"$out/rounds.txt"
done
python3 - "$out/rounds.txt" <<'PY'
import statistics, sys
rows = [tuple(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
c, e, p = (statistics.mean(col) for col in zip(*rows))
med = lambda k: statistics.median(r[0] / r[k] for r in rows)
print(f"means of {len(rows)} rounds: climb/exhaustive {c / e:.3f} (median round {med(1):.3f}), climb/Python {c / p:.3f} (median round {med(2):.3f})")
PY
