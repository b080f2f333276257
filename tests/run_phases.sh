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
  if [ $rc -ne 0 ]; then failed="$name"; summary; exit $rc; fi
}

summary() {
  echo
  echo "=== phase timings ==="
  for i in "${!names[@]}"; do printf '%-28s %5ss\n' "${names[$i]}" "${secs[$i]}"; done
  if [ -n "$failed" ]; then echo "FAILED in phase: $failed"; fi
  return 0
}

phase "lint (ruff)" .venv/bin/ruff check .
phase "unit tests" .venv/bin/pytest -q -m "not integration" tests/unit
phase "testbed up" $PY testbed/testbed.py up
phase "vault bootstrap (local)" $PY -m ops.secrets.bootstrap local
phase "integration tests" .venv/bin/pytest -q -m integration --durations=12 tests/integration
phase "secret scan + dependency audit" $PY -m ops.audit --ci
phase "testbed down (checked)" .venv/bin/pytest -q tests/teardown
summary
