#!/usr/bin/env bash
# Portkey's gateway (npm @portkey-ai/gateway 1.15.2) for the comparison target "portkey".
# Installs bench/portkey/package.json with its lock into DIR (outside the repo) by `npm ci`:
# the lock pins @hono/node-server to 1.14.1 through "overrides" (Portkey's issue #1389: with
# the @hono/node-server npm resolves today, every streamed request fails with
# "TypeError: immutable"). Install scripts are not run: the package's own postinstall is
# patch-package, with no patches in the published package.
# Idempotent; failure is tolerated by the caller (Portkey is then reported as not installed).
#   bash bench/portkey_setup.sh [DIR]
set -u
cd "$(dirname "$0")"
DIR="${1:-/tmp/bench-portkey}"
command -v npm >/dev/null 2>&1 || { echo "bench: npm is not installed (Debian's nodejs and npm)" >&2; exit 1; }
stamp="$(sha256sum portkey/package.json portkey/package-lock.json | sha256sum | cut -c1-16)"
MARK="$DIR/.bench-portkey-$stamp"
if [ -f "$MARK" ] && [ -f "$DIR/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
    exit 0
fi
echo "bench: installing Portkey's gateway into $DIR (npm ci, one time)" >&2
if [ -e "$DIR" ]; then
    # only ever remove what this script made
    [ -f "$DIR/package.json" ] && grep -q '"bench-portkey"' "$DIR/package.json" \
        || { echo "bench: $DIR exists and is not the bench's Portkey install" >&2; exit 1; }
    rm -rf "$DIR"
fi
mkdir -p "$DIR"
cp portkey/package.json portkey/package-lock.json "$DIR/"
if ! (cd "$DIR" && npm ci --no-audit --no-fund --ignore-scripts >"$DIR.install.log" 2>&1); then
    tail -5 "$DIR.install.log" >&2
    echo "bench: Portkey install failed" >&2
    exit 1
fi
hono=$(cd "$DIR" && node -p "require('./node_modules/@hono/node-server/package.json').version" 2>/dev/null)
if [ "$hono" != "1.14.1" ]; then
    echo "bench: @hono/node-server is $hono, not the 1.14.1 of the overrides" >&2
    exit 1
fi
touch "$MARK"
