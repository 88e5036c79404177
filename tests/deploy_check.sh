#!/bin/sh
# The deploy install, checked for real: a fresh venv gets `pip install '.[RUNTIME]'` (no torch), runs
# load/infer on the run's model.onnx, then installs a packed bundle's requirements and runs its commands.
#
#   sh tests/deploy_check.sh RUN [RUNTIME] [VENV]      (make deploy-check runs it on the quickstart run)
#
# PYTHON makes the venv (default python3); DEV_PYTHON (default .venv/bin/python, the full install) packs
# the run and renders the demo clip. Needs the package registry for the install.
set -eu
RUN=$(cd "$1" && pwd)
RT=${2:-onnxruntime}
VENV=${3:-/tmp/edgeaffect-deploy-venv}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
DEV=${DEV_PYTHON:-$ROOT/.venv/bin/python}
DEV=$(cd "$(dirname "$DEV")" && pwd)/$(basename "$DEV")   # absolute: the checks below run in other folders
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
say() { echo "deploy-check: $*"; }

# a copy of the package alone, so the install cannot lean on anything else in the checkout
mkdir -p "$WORK/src"
cp -R "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/edgeaffect" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$WORK/src[$RT]"
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    say "FAIL: pip install '.[$RT]' installed torch"; exit 1
fi
say "'.[$RT]' installed without torch ($(( $(date +%s) - start )) s)"

cd "$WORK"
"$VENV/bin/python" - "$RUN/model.onnx" <<'EOF'
import sys

import edgeaffect

m = edgeaffect.load(sys.argv[1])
out = m.infer(m.spec.dummy_inputs(batch=2))
assert all(v.shape[0] == 2 for v in out.values()), out
print("deploy-check: load/infer ok:", {k: v.shape for k, v in out.items()})
EOF

"$DEV" -m edgeaffect pack "$RUN" --runtime "$RT" --out "$WORK/bundle"
"$DEV" -c "from edgeaffect.demo.clips import render_clip; render_clip('$WORK/clip.mp4', seconds=2.0, fps=15, size=(320, 240))"
cd "$WORK/bundle"
sha256sum -c --quiet SHA256SUMS
"$VENV/bin/python" -m pip install -q -r requirements.txt
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    say "FAIL: the bundle's requirements installed torch"; exit 1
fi
PATH="$VENV/bin:$PATH" PYTHON="$VENV/bin/python" SOURCE="$WORK/clip.mp4" \
    DEMO_ARGS="--headless --jsonl $WORK/demo.jsonl" sh commands.sh
lines=$(wc -l < "$WORK/demo.jsonl")
[ "$lines" -gt 0 ] || { say "FAIL: the demo wrote no predictions"; exit 1; }
say "bundle ran: bench + demo ($lines frames) in $(( $(date +%s) - start )) s"
