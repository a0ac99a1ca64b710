# Helpers shared by scripts/bootstrap.sh and scripts/test-deps.sh (sourced).

STAGES_RAN=0
_stage_name=
_stage_t0=0

# Prints "interp-exec: <what>..." and starts a clock.
stage_start() {
  _stage_name=$1
  _stage_t0=$SECONDS
  STAGES_RAN=$((STAGES_RAN + 1))
  echo "interp-exec: installing $_stage_name ..."
}

# Prints how long the stage started last took.
stage_end() {
  echo "interp-exec: ... done in $((SECONDS - _stage_t0)) s"
}

# with_heartbeat DIR CMD...: runs CMD; while it runs, every
# $INTERP_EXEC_HEARTBEAT_S seconds (default 20) a line with the stage's
# elapsed time and how much DIR holds so far. Exits with CMD's status.
with_heartbeat() {
  local dir=$1 every=${INTERP_EXEC_HEARTBEAT_S:-20} pid next
  shift
  "$@" &
  pid=$!
  next=$((SECONDS + every))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ "$SECONDS" -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
      echo "interp-exec: ... still installing, $((SECONDS - _stage_t0)) s ($(du -sh "$dir" 2>/dev/null | cut -f1) so far)"
      next=$((SECONDS + every))
    fi
  done
  wait "$pid"
}

# build_venv DIR REQUIREMENTS STAGE-TEXT: a virtual environment from a
# requirements file, built once under a lock (several clones may share DIR).
build_venv() {
  local dir=$1 req=$2 what=$3
  mkdir -p "$(dirname "$dir")"
  (
    if ! flock -n 9; then
      echo "interp-exec: waiting for another process building $(dirname "$dir") ..."
      flock 9
    fi
    if [ ! -f "$dir/.complete" ]; then
      stage_start "$what"
      rm -rf "$dir"
      if ! python3 -m venv "$dir"; then
        echo "interp-exec: 'python3 -m venv' failed; install Python's venv module (Debian/Ubuntu: apt-get install python3-venv) and run again" >&2
        rm -rf "$dir"
        exit 1
      fi
      with_heartbeat "$dir" "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
      touch "$dir/.complete"
      stage_end
    fi
  ) 9>"$(dirname "$dir")/.lock"
  STAGES_RAN=$((STAGES_RAN + 1))
}

# report_size PATH...: one line with the disk each path takes (symlinks followed).
report_size() {
  local parts=() p
  for p in "$@"; do
    [ -e "$p" ] || continue
    parts+=("$(du -shL "$p" 2>/dev/null | cut -f1) $p")
  done
  local IFS=';'
  echo "interp-exec: environment on disk:${parts[*]/#/ }"
}
