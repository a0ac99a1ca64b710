#!/usr/bin/env bash
# Installs what interp-exec needs to run from this checkout, idempotently:
#   1. Deno, pinned in package.json, from npm (node_modules/.bin/deno);
#   2. every module interp-exec imports, into the Deno cache (so an
#      mcp_config can run with --cached-only);
#   3. the Python environment from requirements.txt, built once in a cache
#      outside the clone keyed by the file's hash, linked here as .venv;
#   4. the bundled tiny example models (examples/tiny/models), built locally.
# What only the tests need (Enterprise Gateway, configurable-http-proxy) is
# installed by scripts/test-deps.sh, which scripts/test.sh runs.
# Each stage that has work to do prints a line when it starts and one with its
# elapsed time when it ends; after any install, the environment's disk size.
# Progress goes to stderr; stdout stays clean for the handle.
set -euo pipefail
exec 3>&1 1>&2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/stages.sh
. scripts/stages.sh

# node_modules follows package-lock.json (a marker per lockfile hash), so a
# checkout made before a change to it is brought in line too.
npm_hash=$(sha256sum package-lock.json | cut -c1-16)
if [ ! -x node_modules/.bin/deno ] || [ ! -f "node_modules/.interp-exec-npm-$npm_hash" ]; then
  stage_start "1/4 Deno from npm (node_modules/)"
  npm ci --no-audit --no-fund --loglevel=error
  touch "node_modules/.interp-exec-npm-$npm_hash"
  stage_end
fi
# Every module of main.ts, dynamic imports included, in the Deno cache once per
# deno.lock: an mcp_config runs with --cached-only (lib/modes/mcp_config.ts).
lock_hash=$(sha256sum deno.lock | cut -c1-16)
if [ ! -f "node_modules/.deno-cached-$lock_hash" ]; then
  stage_start "2/4 interp-exec's TypeScript dependencies, into the Deno cache"
  if ! node_modules/.bin/deno cache --frozen --quiet main.ts 2>/dev/null; then
    node_modules/.bin/deno cache --frozen main.ts
  fi
  rm -f node_modules/.deno-cached-*
  touch "node_modules/.deno-cached-$lock_hash"
  stage_end
fi

hash=$(sha256sum requirements.txt | cut -c1-16)
cache=${INTERP_EXEC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/interp-exec}
venv="$cache/venv-$hash"
if [ ! -f "$venv/.complete" ]; then
  build_venv "$venv" requirements.txt \
    "3/4 the Python environment in $venv (once per requirements.txt; torch is most of it, a few minutes)"
fi
if [ "$(readlink .venv 2>/dev/null)" != "$venv" ]; then
  ln -sfn "$venv" .venv
fi

if [ ! -f examples/tiny/models/tiny-llama-lora/DONE ]; then
  stage_start "4/4 the tiny example models (examples/tiny/models)"
  .venv/bin/python examples/tiny/build_models.py examples/tiny/models
  stage_end
fi

if [ "$STAGES_RAN" -gt 0 ]; then
  report_size "$venv" "$ROOT/node_modules" "$ROOT/examples/tiny/models"
fi
