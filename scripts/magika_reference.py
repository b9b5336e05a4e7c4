"""Content types of files by Google's Python `magika` package (the reference thrum's
`predict -p zoo:magika --file` is checked against): one JSON object per file, in order, with
the output label, the model's label and its score, as `MagikaResult` gives them.

usage: python magika_reference.py FILE...
"""

import json
import sys
from pathlib import Path

import magika


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]]
    results = magika.Magika().identify_paths(paths)
    out = []
    for path, r in zip(paths, results):
        if not r.ok:
            raise SystemExit(f"magika failed on {path}: {r.status}")
        out.append(
            {
                "path": str(path),
                "output": str(r.output.label),
                "dl": str(r.dl.label),
                "score": float(r.score),
                "group": r.output.group,
                "mime_type": r.output.mime_type,
                "version": magika.__version__,
            }
        )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
