#!/usr/bin/env bash
# Magika on the test corpus (scripts/magika_corpus.py: 32 real files of ~30 types): thrum
# (`predict -p zoo:magika --file ...`, one batch, on tract and on ONNX Runtime) against the
# Python magika package's identify_paths on the same files, in the same run, each given the
# same cores; the time is read + features + inference + rules, measured inside each process
# (model loading and Python's imports excluded).
#
#   bash scripts/bench-magika.sh [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
rounds=${1:-20}
thrum=${THRUM_BIN:-"${CARGO_TARGET_DIR:-$here/../target}/release/thrum"}
unset THRUM_BIN   # the script's own variable, not thrum's
python="$(thrum_home)/testdata/venv-image/bin/python"
corpus="$(thrum_home)/testdata/files"
"$thrum" zoo install magika >/dev/null
files=()
for _ in $(seq "$rounds"); do for f in "$corpus"/*; do files+=("$f"); done; done
machine_line
echo "${#files[@]} files per run (the corpus $rounds times)"
for attempt in 1 2 3; do
  line="round $attempt:"
  for engine in tract ort; do
    args=()
    for f in "${files[@]}"; do args+=(--file "$f"); done
    rate=$("$thrum" predict -e "$engine" -p zoo:magika --json "${args[@]}" \
      | "$python" -c 'import json,sys; r=json.load(sys.stdin); print("%.0f" % (len(r["files"]) / (r["read_ms"] + r["inference_ms"]) * 1000))')
    line="$line thrum $engine $rate files/s,"
  done
  theirs=$("$python" - "${files[@]}" <<'PY'
import sys, time
from pathlib import Path
import magika
m = magika.Magika()
paths = [Path(p) for p in sys.argv[1:]]
m.identify_paths(paths[:8])  # the session's first run, as thrum's model load does its own
t = time.perf_counter()
m.identify_paths(paths)
print("%.0f" % (len(paths) / (time.perf_counter() - t)))
PY
)
  echo "$line Python magika $theirs files/s"
done
