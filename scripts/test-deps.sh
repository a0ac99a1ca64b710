#!/usr/bin/env bash
# Installs what only the tests need, idempotently, in caches outside the clone
# keyed by their files' hashes (as scripts/bootstrap.sh does for .venv):
#   1. Jupyter Enterprise Gateway from requirements-eg.txt, whose pins conflict
#      with requirements.txt, in its own environment linked here as .venv-eg;
#   2. configurable-http-proxy for the JupyterHub test and the MCP Inspector
#      CLI for tests/e2e/inspector_cli_test.ts, from scripts/test-deps/package.json
#      and its lockfile (npm ci).
# Prints, on stdout, the environment variables tests/clusters/fixtures.ts reads
# (eval its output); progress goes to stderr.
set -euo pipefail
exec 3>&1 1>&2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/stages.sh
. scripts/stages.sh
cache=${INTERP_EXEC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/interp-exec}

eg_hash=$(sha256sum requirements-eg.txt | cut -c1-16)
eg_venv="$cache/venv-eg-$eg_hash"
if [ ! -f "$eg_venv/.complete" ]; then
  build_venv "$eg_venv" requirements-eg.txt \
    "test 1/2 the Enterprise Gateway environment in $eg_venv (once per requirements-eg.txt)"
fi
if [ "$(readlink .venv-eg 2>/dev/null)" != "$eg_venv" ]; then
  ln -sfn "$eg_venv" .venv-eg
fi

npm_hash=$(cat scripts/test-deps/package.json scripts/test-deps/package-lock.json | sha256sum | cut -c1-16)
npm_dir="$cache/test-npm-$npm_hash"
if [ ! -f "$npm_dir/.complete" ]; then
  mkdir -p "$cache"
  (
    flock 9
    if [ ! -f "$npm_dir/.complete" ]; then
      stage_start "test 2/2 configurable-http-proxy and the MCP Inspector from npm in $npm_dir"
      rm -rf "$npm_dir"
      mkdir -p "$npm_dir"
      cp scripts/test-deps/package.json scripts/test-deps/package-lock.json "$npm_dir/"
      (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error)
      touch "$npm_dir/.complete"
      stage_end
    fi
  ) 9>"$cache/.lock-npm"
  STAGES_RAN=$((STAGES_RAN + 1))
fi

if [ "$STAGES_RAN" -gt 0 ]; then
  report_size "$eg_venv" "$npm_dir"
fi
printf 'export INTERP_EXEC_EG_PYTHON=%q\n' "$ROOT/.venv-eg/bin/python" >&3
printf 'export INTERP_EXEC_CHP=%q\n' "$npm_dir/node_modules/.bin/configurable-http-proxy" >&3
printf 'export INTERP_EXEC_INSPECTOR=%q\n' "$npm_dir/node_modules/.bin/mcp-inspector" >&3
