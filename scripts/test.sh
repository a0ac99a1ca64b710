#!/usr/bin/env bash
# Runs the whole test suite: formatting, lint and types, the Python tests
# (kernel_setup.py, the built-in skills) and the Deno tests (unit, process,
# real Jupyter servers and kernels, MCP). Installs what it needs first.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/bootstrap.sh
DENO="$ROOT/node_modules/.bin/deno"

# One folder of tiny models and one state folder for the whole run.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/interp-exec-test.XXXXXX")
export INTERP_EXEC_TEST_MODELS="$WORK/models"
export INTERP_EXEC_HOME="$WORK/state"
export INTERP_EXEC_PYTHON="$ROOT/.venv/bin/python"
cleanup() {
  # Stop any embedded server a test left behind, then remove the folder.
  "$DENO" run -A --quiet main.ts server stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
.venv/bin/python examples/tiny/build_models.py "$INTERP_EXEC_TEST_MODELS"

echo "== deno fmt / lint / check"
"$DENO" fmt --check
"$DENO" lint
"$DENO" check main.ts tests/ bench/

echo "== pytest"
.venv/bin/python -m pytest tests/python -q

echo "== deno test"
"$DENO" test --allow-all --frozen tests/
