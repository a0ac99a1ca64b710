#!/usr/bin/env bash
# Runs the whole test suite: formatting, lint and types, the Python tests
# (kernel_setup.py, the built-in skills) and the Deno tests (unit, process,
# real Jupyter servers and kernels, MCP). Installs what it needs first.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/bootstrap.sh
# What only the tests need (Enterprise Gateway, configurable-http-proxy).
deps=$(scripts/test-deps.sh)
eval "$deps"
DENO="$ROOT/node_modules/.bin/deno"

# One folder of tiny models and one state folder for the whole run.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/interp-exec-test.XXXXXX")
export INTERP_EXEC_TEST_MODELS="$WORK/models"
export INTERP_EXEC_HOME="$WORK/state"
export INTERP_EXEC_PYTHON="$ROOT/.venv/bin/python"
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  # Stop any embedded server a test left behind, then remove the folder.
  "$DENO" run -A --quiet main.ts server stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
.venv/bin/python examples/tiny/build_models.py "$INTERP_EXEC_TEST_MODELS"

# One stock Jupyter Server (not started by interp-exec, so Nagle stays on as
# on servers we do not control; no real-time collaboration, as on a plain
# server) behind a JupyterHub-style prefix, shared by the test files that
# need a remote server.
export INTERP_EXEC_TEST_SERVER_ROOT="$WORK/server-root"
export INTERP_EXEC_TEST_SERVER_TOKEN_FILE="$WORK/server-token"
mkdir -p "$INTERP_EXEC_TEST_SERVER_ROOT"
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/python -c 'import secrets; print(secrets.token_hex(16))' >"$INTERP_EXEC_TEST_SERVER_TOKEN_FILE"
export INTERP_EXEC_TEST_SERVER_URL="http://127.0.0.1:$port/user/tester/"
(cd "$INTERP_EXEC_TEST_SERVER_ROOT" && JUPYTER_TOKEN=$(cat "$INTERP_EXEC_TEST_SERVER_TOKEN_FILE") exec "$ROOT/.venv/bin/python" -m jupyter_server \
  --ServerApp.ip=127.0.0.1 --ServerApp.port="$port" --ServerApp.port_retries=0 \
  --ServerApp.base_url=/user/tester/ --ServerApp.root_dir="$INTERP_EXEC_TEST_SERVER_ROOT" \
  --ServerApp.open_browser=False --ServerApp.allow_root=True \
  --ServerApp.jpserver_extensions=jupyter_server_ydoc=False >"$WORK/server.log" 2>&1) &
SERVER_PID=$!
for _ in $(seq 600); do
  if .venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "api")' "$INTERP_EXEC_TEST_SERVER_URL" 2>/dev/null; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.1
done

# Debian's Chromium for the tests of what a person sees in JupyterLab
# (tests/e2e/shared_notebook_browser_test.ts); they skip, saying why, without it.
if [ ! -x /usr/bin/chromium ] && [ -z "${INTERP_EXEC_CHROMIUM:-}" ] && command -v apt-get >/dev/null; then
  echo "== installing Debian's chromium for the browser tests"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
    >"$WORK/chromium-install.log" 2>&1 ||
    echo "interp-exec: could not install chromium with apt-get; the browser tests will skip" >&2
fi
# Screenshots of the browser tests, kept after the run.
export INTERP_EXEC_TEST_ARTIFACTS="${INTERP_EXEC_TEST_ARTIFACTS:-$ROOT/test-artifacts}"

echo "== deno fmt / lint / check"
"$DENO" fmt --check
"$DENO" lint
"$DENO" check main.ts tests/ bench/

echo "== pytest"
.venv/bin/python -m pytest tests/python -q

echo "== deno test"
"$DENO" test --allow-all --frozen tests/
