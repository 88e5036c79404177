#!/bin/sh
# Signed artifacts, round trip: keygen, pack --sign, verify, bench with trust; then a changed byte, a missing
# signature and another key are each refused in one line (exit 1).
#
#   sh tests/sign_check.sh RUN [RUNTIME]      (make deploy-check runs it on the quickstart run)
#
# DEV_PYTHON (default .venv/bin/python): an install with the `sign` extra. Offline: no network is used.
set -eu
RUN=$(cd "$1" && pwd)
RT=${2:-onnxruntime}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEV=${DEV_PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
say() { echo "sign-check: $*"; }
EA="$DEV -m edgeaffect"
case "$RT" in   # the bundle's model file, and the file holding its weights (the one a tamperer edits)
    openvino) MODEL=openvino/model.xml; WEIGHTS=openvino/model.bin ;;
    *) MODEL=model.onnx; WEIGHTS=model.onnx ;;
esac
KEY="$WORK/keys/edgeaffect-signing.key"
PUB="$WORK/keys/edgeaffect-signing.pub"

# refused: the command exits 1 with one error line that contains $1
refused() {
    want=$1; shift
    if "$@" >"$WORK/out" 2>"$WORK/err"; then say "FAIL: accepted: $*"; exit 1; fi
    grep -q "^error: .*$want" "$WORK/err" || { say "FAIL: no '$want' in:"; cat "$WORK/err"; exit 1; }
    [ "$(grep -c '^error: ' "$WORK/err")" -eq 1 ] || { say "FAIL: not one error line:"; cat "$WORK/err"; exit 1; }
}

$EA sign keygen --out "$WORK/keys"
$EA sign keygen --out "$WORK/other"
$EA pack "$RUN" --runtime "$RT" --out "$WORK/bundle" --sign "$KEY"
$EA sign verify "$WORK/bundle" --trust "$PUB"
EDGEAFFECT_TRUST="$PUB" $EA bench "$WORK/bundle/$MODEL" --runtime "$RT" --batch 1 --budget 0.2 --rounds 1 \
    --no-isolate >/dev/null
say "signed bundle verified and benched with EDGEAFFECT_TRUST"

cp -R "$WORK/bundle" "$WORK/tampered"
"$DEV" - "$WORK/tampered/$WEIGHTS" <<'EOF'
import os
import sys

path = sys.argv[1]
st = os.stat(path)
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0xFF            # same size, mtime put back: what a hash cache would miss
open(path, "wb").write(bytes(data))
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
EOF
refused "changed: $WEIGHTS" $EA sign verify "$WORK/tampered" --trust "$PUB"
refused "changed: $WEIGHTS" env EDGEAFFECT_TRUST="$PUB" $EA bench "$WORK/tampered/$MODEL" --runtime "$RT"
say "a changed byte is refused"

cp -R "$WORK/bundle" "$WORK/unsigned"
rm "$WORK/unsigned/model.sig"
refused "is not signed" env EDGEAFFECT_TRUST="$PUB" $EA bench "$WORK/unsigned/$MODEL" --runtime "$RT"
refused "does not verify" $EA bench "$WORK/bundle/$MODEL" --runtime "$RT" --trust "$WORK/other/edgeaffect-signing.pub"
say "ok: unsigned and wrongly signed bundles are refused"
