#!/bin/sh
# The deploy install, checked for real: a fresh venv gets `pip install '.[RUNTIMES]'` (no torch); for each
# runtime it runs load/infer on the run's model, packs a bundle, checks it with `sha256sum -c`,
# installs its requirements and runs its commands.sh to the end (bundle check, bench, headless demo),
# through the installed console script as on a device.
#
#   sh tests/deploy_check.sh RUN [RUNTIMES] [VENV]     (make deploy-check runs it on the quickstart run)
#
# RUNTIMES is comma-separated (default onnxruntime,openvino; one venv holds both, so the install is paid
# once). PYTHON makes the venv (default python3); DEV_PYTHON (default .venv/bin/python, the full install)
# packs the run (this checkout's package) and renders the demo clip. Needs the package registry for the install.
set -eu
RUN=$(cd "$1" && pwd)
RTS=${2:-onnxruntime,openvino}
VENV=${3:-/tmp/edgeaffect-deploy-venv}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
DEV=${DEV_PYTHON:-$ROOT/.venv/bin/python}
DEV=$(cd "$(dirname "$DEV")" && pwd)/$(basename "$DEV")   # absolute: the checks below run in other folders
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
say() { echo "deploy-check: $*"; }
dev() { PYTHONPATH="$ROOT" "$DEV" "$@"; }   # this checkout's package, whatever DEV's env has installed

# a copy of the package alone, so the install cannot lean on anything else in the checkout
mkdir -p "$WORK/src"
cp -R "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/edgeaffect" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$WORK/src[$RTS]"
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    say "FAIL: pip install '.[$RTS]' installed torch"; exit 1
fi
say "'.[$RTS]' installed without torch ($(( $(date +%s) - start )) s)"

cd "$WORK"
dev -c "from edgeaffect.demo.clips import render_clip; render_clip('$WORK/clip.mp4', seconds=2.0, fps=15, size=(320, 240))"

for RT in $(echo "$RTS" | tr ',' ' '); do
    t0=$(date +%s)
    case $RT in openvino) MODEL=$RUN/openvino/model.xml;; *) MODEL=$RUN/model.onnx;; esac
    "$VENV/bin/python" - "$MODEL" "$RT" <<'EOF'
import sys

import edgeaffect

m = edgeaffect.load(sys.argv[1], runtime=sys.argv[2])
out = m.infer(m.spec.dummy_inputs(batch=2))
assert all(v.shape[0] == 2 for v in out.values()), out
print(f"deploy-check: {sys.argv[2]} load/infer ok:", {k: v.shape for k, v in out.items()})
EOF
    dev -m edgeaffect pack "$RUN" --runtime "$RT" --out "$WORK/bundle-$RT"
    cd "$WORK/bundle-$RT"
    sha256sum -c --quiet --strict SHA256SUMS        # every file of the bundle, its manifest too
    # the bundle's own wheel is what runs (pip would keep an installed edgeaffect of the same version)
    "$VENV/bin/python" -m pip uninstall -q -y edgeaffect
    "$VENV/bin/python" -m pip install -q -r requirements.txt
    if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        say "FAIL: the $RT bundle's requirements installed torch"; exit 1
    fi
    cd "$WORK"
    # the installed console script on PATH, as on a device (no PYTHON: commands.sh finds `edgeaffect`)
    env -u PYTHON PATH="$VENV/bin:$PATH" SOURCE="$WORK/clip.mp4" BENCH_ARGS="--batch 1 --budget 2" \
        DEMO_ARGS="--headless --jsonl $WORK/demo-$RT.jsonl" sh "$WORK/bundle-$RT/commands.sh"
    lines=$(wc -l < "$WORK/demo-$RT.jsonl")
    [ "$lines" -gt 0 ] || { say "FAIL: the $RT bundle's demo wrote no predictions"; exit 1; }
    say "$RT bundle ran to the end: check + bench + demo ($lines frames) in $(( $(date +%s) - t0 )) s"
done
say "all bundles ran ($RTS) in $(( $(date +%s) - start )) s"
