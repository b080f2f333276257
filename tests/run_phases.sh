#!/usr/bin/env bash
# `make test`: every phase of the suite in order, each timed, one summary at the end. The testbed
# is brought up here (never skipped): the integration tests need real hosts.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=.venv/bin/python
declare -a names=() secs=()
failed=""

phase() {  # phase NAME COMMAND...
  local name=$1; shift
  echo
  echo "=== phase: $name ==="
  local t0=$SECONDS
  "$@"
  local rc=$?
  names+=("$name"); secs+=($((SECONDS - t0)))
  if [ $rc -ne 0 ]; then failed="$name"; wait_background_quietly; summary; exit $rc; fi
}

# One phase may run in the background while the next runs in the foreground: the testbed's
# images build (mostly waiting on apt, debootstrap and Docker) while the unit tests (which need
# no testbed) use the CPU. Its output is printed, in one piece, when it is waited for.
bg_pid="" bg_name="" bg_log="" bg_t0=0

start_background() {  # start_background NAME COMMAND...
  bg_name=$1; shift
  bg_log=$(mktemp "${TMPDIR:-/tmp}/superapp-phase.XXXXXX")
  bg_t0=$SECONDS
  echo
  echo "=== phase: $bg_name (in the background; its output follows when it ends) ==="
  "$@" >"$bg_log" 2>&1 &
  bg_pid=$!
}

wait_background() {  # the background phase's output; fails the run when it failed
  [ -n "$bg_pid" ] || return 0
  wait "$bg_pid"
  local rc=$?
  echo
  echo "=== phase: $bg_name (output) ==="
  cat "$bg_log"; rm -f "$bg_log"
  names+=("$bg_name (background)"); secs+=($((SECONDS - bg_t0)))
  bg_pid=""
  if [ $rc -ne 0 ]; then failed="$bg_name"; summary; exit $rc; fi
}

wait_background_quietly() {  # a foreground phase failed: never leave the background one running
  if [ -n "$bg_pid" ]; then wait "$bg_pid"; cat "$bg_log"; rm -f "$bg_log"; bg_pid=""; fi
}

summary() {
  echo
  echo "=== phase timings ==="
  for i in "${!names[@]}"; do printf '%-28s %5ss\n' "${names[$i]}" "${secs[$i]}"; done
  if [ -n "$failed" ]; then echo "FAILED in phase: $failed"; fi
  return 0
}

phase "lint (ruff)" .venv/bin/ruff check .
start_background "testbed up" $PY testbed/testbed.py up
phase "unit tests" .venv/bin/pytest -q -m "not integration" tests/unit
# The repository's secret scans and pip-audit need no testbed either: they run while it still
# comes up (it takes longer than the unit tests), not after the integration tests.
phase "secret scan + dependency audit" $PY -m ops.audit --ci
wait_background
phase "vault bootstrap (local)" $PY -m ops.secrets.bootstrap local
phase "integration tests" .venv/bin/pytest -q -m integration --durations=30 tests/integration
phase "testbed down (checked)" .venv/bin/pytest -q tests/teardown
summary
