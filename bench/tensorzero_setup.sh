#!/usr/bin/env bash
# TensorZero's gateway for the comparison target "tensorzero": the PyPI wheel `tensorzero`,
# which holds the whole Rust gateway in its extension module, in a venv of its own.
# Idempotent; failure is tolerated by the caller (TensorZero is then reported as not installed).
#   bash bench/tensorzero_setup.sh [VENV_DIR]
set -u
VENV="${1:-/tmp/bench-tensorzero-venv}"
VERSION="2026.6.0"
PY="${PYTHON:-python3}"

MARK="$VENV/.bench-tensorzero-$VERSION"
if [ -f "$MARK" ] && [ -x "$VENV/bin/python" ]; then
    exit 0
fi
echo "bench: installing tensorzero==$VERSION into $VENV (one time)" >&2
if [ -e "$VENV" ]; then
    # Only ever remove a venv (a half-made one from an earlier try).
    [ -f "$VENV/pyvenv.cfg" ] || { echo "bench: $VENV exists and is not a venv" >&2; exit 1; }
    rm -rf "$VENV"
fi
"$PY" -m venv "$VENV" || exit 1
if ! "$VENV/bin/pip" install -q "tensorzero==$VERSION" >"$VENV.install.log" 2>&1; then
    tail -5 "$VENV.install.log" >&2
    echo "bench: tensorzero install failed" >&2
    exit 1
fi
"$VENV/bin/python" -c "import tensorzero; tensorzero._start_http_gateway" >/dev/null 2>&1 || {
    echo "bench: tensorzero installed but has no _start_http_gateway" >&2
    exit 1
}
touch "$MARK"
