#!/usr/bin/env bash
# Sentence embeddings with the real all-MiniLM-L6-v2 (docs/performance.md, "Sentence
# embeddings"): thrum's whole pipeline (tokenize, infer, pool) against its peer, the same ONNX
# file through ONNX Runtime's Python API with the Python `tokenizers` package (what fastembed
# does: scripts/embed_python.py), alternating ROUNDS times; and every engine that runs the
# model, with its stages. Prints markdown.
#   scripts/bench-text.sh   (THRUM_BIN, DURATION, ROUNDS, BATCH, THREADS, ENGINES)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
thrum=${THRUM_BIN:-target/release/thrum}
unset THRUM_BIN # thrum warns about THRUM_* variables it does not know
duration=${DURATION:-10}
rounds=${ROUNDS:-3}
batch=${BATCH:-32}
threads=${THREADS:-$(nproc)}
sentences="$here/data/sentences.txt"
python="$(thrum_home)/testdata/venv-text/bin/python"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$thrum" zoo install all-minilm-l6-v2 >/dev/null
"$thrum" zoo export all-minilm-l6-v2 -o "$work/minilm.onnx" >/dev/null
model_dir="$(thrum_home)/models/all-minilm-l6-v2"

machine_line
echo "batch $batch sentences of scripts/data/sentences.txt per call, 1 worker × $threads intra-op threads, ${duration} s each"
echo

# thrum_row ENGINE LABEL [THREAD FLAGS]: one `thrum bench --text-file` run as a table row
# (1 worker × THREADS intra-op threads unless flags are given; none: thrum's default split).
thrum_row() {
  local engine=$1 label=$2
  shift 2
  local split=(-t 1 --intra-op-threads "$threads")
  [ $# -gt 0 ] && split=("$@")
  [ "${split[0]}" = default ] && split=()
  "$thrum" bench -e "$engine" -p zoo:all-minilm-l6-v2 --text-file "$sentences" -b "$batch" \
    "${split[@]}" -d "$duration" -q --json "$work/bench.json"
  python3 - "$work/bench.json" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["results"]["latency_ms"]
rss = r["memory"].get("rss_peak_run_mib") or 0
print(f"| {sys.argv[2]} | {r['results']['samples_per_s']:.1f} | {l['total']['p50_ms']:.2f} | "
      f"{l['preprocess']['mean_ms']:.2f} | {l['inference']['mean_ms']:.2f} | {l['postprocess']['mean_ms']:.2f} | "
      f"{100 * (l['preprocess']['mean_ms'] + l['postprocess']['mean_ms']) / l['total']['mean_ms']:.1f} % | {rss:.0f} |")
PY
}

# python_row [PROCESSES]: the peer, one session of THREADS threads, or PROCESSES copies of it
# with THREADS / PROCESSES threads each (fastembed's `parallel=N`).
python_row() {
  local processes=${1:-1}
  "$python" "$here/embed_python.py" "$work/minilm.onnx" "$model_dir" "$sentences" "$batch" \
    "$((threads / processes))" "$duration" "$processes" >"$work/python.json"
  python3 - "$work/python.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
total = r["tokenize_ms"] + r["inference_ms"] + r["pool_ms"]
how = f"{r.get('processes', 1)} processes × {r['threads']} thread(s)" if r.get("processes", 1) > 1 else f"1 session × {r['threads']} threads"
print(f"| Python: onnxruntime {r['onnxruntime']} + tokenizers ({how}) | {r['sentences_per_s']:.1f} | – | "
      f"{r['tokenize_ms']:.2f} | {r['inference_ms']:.2f} | {r['pool_ms']:.2f} | "
      f"{100 * (r['tokenize_ms'] + r['pool_ms']) / total:.1f} % | – |")
PY
}

echo "| round: run | sentences/s | P50 ms per call | tokenize ms | inference ms | pool ms | outside inference | RSS peak MiB |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  echo -n "| $round: " && thrum_row ort "thrum, ort (1 worker × $threads threads)" | sed 's/^| //'
  echo -n "| $round: " && thrum_row ort "thrum, ort (its default split of the cores)" default | sed 's/^| //'
  echo -n "| $round: " && python_row | sed 's/^| //'
  [ "$threads" -gt 1 ] && echo -n "| $round: " && python_row "$threads" | sed 's/^| //'
done
echo
echo "Every engine that runs the model (one round):"
echo
echo "| engine | sentences/s | P50 ms per call | tokenize ms | inference ms | pool ms | outside inference | RSS peak MiB |"
echo "|---|---|---|---|---|---|---|---|"
for engine in ${ENGINES:-ort tract torch tensorflow}; do
  thrum_row "$engine" "$engine"
done
