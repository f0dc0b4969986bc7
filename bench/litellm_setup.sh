#!/usr/bin/env bash
# Creates a separate venv with LiteLLM's proxy for the comparison target.
# Idempotent; failure is tolerated by the caller (LiteLLM is then reported
# as "not installed").  Usage: bash bench/litellm_setup.sh [VENV_DIR]
set -u
VENV="${1:-/tmp/bench-litellm-venv}"
VERSION="1.106.2"
PY="${PYTHON:-python3}"

MARK="$VENV/.bench-litellm-$VERSION"
if [ -f "$MARK" ] && [ -x "$VENV/bin/litellm" ]; then
    exit 0
fi
echo "bench: installing litellm[proxy]==$VERSION into $VENV (one time, a few minutes)" >&2
if [ -e "$VENV" ]; then
    # Only ever remove a venv (a half-made one from an earlier try).
    [ -f "$VENV/pyvenv.cfg" ] || { echo "bench: $VENV exists and is not a venv" >&2; exit 1; }
    rm -rf "$VENV"
fi
"$PY" -m venv "$VENV" || exit 1
# Later releases need a certifi this registry lacks, hence the pin.
if ! "$VENV/bin/pip" install -q "litellm[proxy]==$VERSION" >"$VENV.install.log" 2>&1; then
    tail -5 "$VENV.install.log" >&2
    echo "bench: litellm install failed" >&2
    exit 1
fi
"$VENV/bin/python" -c "import litellm.proxy.proxy_server" >/dev/null 2>&1 || {
    echo "bench: litellm installed but its proxy does not import" >&2
    exit 1
}
touch "$MARK"
