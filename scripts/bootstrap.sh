#!/usr/bin/env bash
# Installs what interp-exec needs to run from this checkout, idempotently:
#   1. Deno, pinned in package.json, from npm (node_modules/.bin/deno);
#   2. the Python environment from requirements.txt, built once in a cache
#      outside the clone keyed by the file's hash, linked here as .venv;
#   3. Jupyter Enterprise Gateway from requirements-eg.txt, whose pins conflict
#      with requirements.txt, in a second cached environment linked as .venv-eg
#      (the cluster tests; configurable-http-proxy for JupyterHub comes with
#      npm in step 1);
#   4. the bundled tiny example models (examples/tiny/models), built locally.
# Progress goes to stderr; stdout stays clean for the handle.
set -euo pipefail
exec 3>&1 1>&2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ ! -x node_modules/.bin/deno ] || [ ! -x node_modules/.bin/configurable-http-proxy ]; then
  echo "interp-exec: installing Deno and configurable-http-proxy from npm (once)"
  npm ci --no-audit --no-fund --loglevel=error
fi

hash=$(sha256sum requirements.txt | cut -c1-16)
cache=${INTERP_EXEC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/interp-exec}
venv="$cache/venv-$hash"
if [ ! -f "$venv/.complete" ]; then
  mkdir -p "$cache"
  (
    flock 9
    if [ ! -f "$venv/.complete" ]; then
      echo "interp-exec: building the Python environment in $venv (once per requirements.txt; a few minutes)"
      rm -rf "$venv"
      if ! python3 -m venv "$venv"; then
        echo "interp-exec: 'python3 -m venv' failed; install Python's venv module (Debian/Ubuntu: apt-get install python3-venv) and run again" >&2
        rm -rf "$venv"
        exit 1
      fi
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
      touch "$venv/.complete"
    fi
  ) 9>"$cache/.lock"
fi
if [ "$(readlink .venv 2>/dev/null)" != "$venv" ]; then
  ln -sfn "$venv" .venv
fi

# Enterprise Gateway's own environment, built the same way (hash-keyed, once).
eg_hash=$(sha256sum requirements-eg.txt | cut -c1-16)
eg_venv="$cache/venv-eg-$eg_hash"
if [ ! -f "$eg_venv/.complete" ]; then
  mkdir -p "$cache"
  (
    flock 9
    if [ ! -f "$eg_venv/.complete" ]; then
      echo "interp-exec: building the Enterprise Gateway environment in $eg_venv (once per requirements-eg.txt)"
      rm -rf "$eg_venv"
      if ! python3 -m venv "$eg_venv"; then
        echo "interp-exec: 'python3 -m venv' failed; install Python's venv module (Debian/Ubuntu: apt-get install python3-venv) and run again" >&2
        rm -rf "$eg_venv"
        exit 1
      fi
      "$eg_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-eg.txt
      touch "$eg_venv/.complete"
    fi
  ) 9>"$cache/.lock"
fi
if [ "$(readlink .venv-eg 2>/dev/null)" != "$eg_venv" ]; then
  ln -sfn "$eg_venv" .venv-eg
fi

if [ ! -f examples/tiny/models/tiny-llama-lora/DONE ]; then
  echo "interp-exec: building the tiny example models (once)"
  .venv/bin/python examples/tiny/build_models.py examples/tiny/models
fi
