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

# Phases may run in the background, beside the ones in the foreground. The testbed's setup
# (hosts, Vault, the first deploy of the repo's release: mostly waiting on Docker, apt and SSH)
# runs while the unit tests (CPU, no testbed) run in the foreground. The repository audit
# (secret scans of tree and history, pip-audit: no testbed, no timing of its own) runs at the
# lowest priority (`nice -n 19`) from the start until the integration tests end: it takes the
# CPU that the testbed's waits leave idle (Prometheus scrapes, leases, canary steps) and yields
# it whenever a host or a test needs it. Each background phase's output is printed, in one
# piece, when it is waited for.
declare -A bg_pids=() bg_logs=() bg_t0s=()

start_background() {  # start_background NAME COMMAND...
  local name=$1; shift
  bg_logs[$name]=$(mktemp "${TMPDIR:-/tmp}/superapp-phase.XXXXXX")
  bg_t0s[$name]=$SECONDS
  echo
  echo "=== phase: $name (in the background; its output follows when it ends) ==="
  # the subshell keeps counting $SECONDS: it writes when the phase really ended
  ( "$@"; rc=$?; echo "$SECONDS" >"${bg_logs[$name]}.end"; exit $rc ) >"${bg_logs[$name]}" 2>&1 &
  bg_pids[$name]=$!
}

wait_background() {  # wait_background NAME: its output; fails the run when it failed
  local name=$1
  [ -n "${bg_pids[$name]:-}" ] || return 0
  wait "${bg_pids[$name]}"
  local rc=$?
  echo
  echo "=== phase: $name (output) ==="
  cat "${bg_logs[$name]}"
  local ended; ended=$(cat "${bg_logs[$name]}.end" 2>/dev/null || echo "$SECONDS")
  rm -f "${bg_logs[$name]}" "${bg_logs[$name]}.end"
  names+=("$name (background)"); secs+=($((ended - bg_t0s[$name])))
  unset "bg_pids[$name]"
  if [ $rc -ne 0 ]; then failed="$name"; wait_background_quietly; summary; exit $rc; fi
}

failed_already() {  # fails the run now when a background phase has already ended and failed
  local name=$1
  [ -n "${bg_pids[$name]:-}" ] || return 0
  kill -0 "${bg_pids[$name]}" 2>/dev/null && return 0
  wait_background "$name"
}

wait_background_quietly() {  # a phase failed: never leave a background one running
  local name
  for name in "${!bg_pids[@]}"; do
    wait "${bg_pids[$name]}"; echo; echo "=== phase: $name (output) ==="
    cat "${bg_logs[$name]}"; rm -f "${bg_logs[$name]}" "${bg_logs[$name]}.end"
    unset "bg_pids[$name]"
  done
}

summary() {
  echo
  echo "=== phase timings ==="
  for i in "${!names[@]}"; do printf '%-58s %5ss\n' "${names[$i]}" "${secs[$i]}"; done
  if [ -n "$failed" ]; then echo "FAILED in phase: $failed"; fi
  return 0
}

# The passes deploys remember (audit: ops/audit/passed.py, validation: ops/validate_passed.py)
# are this run's own: the suite starts cold, whatever earlier runs left, and leaves none behind.
CACHES=$(mktemp -d "${TMPDIR:-/tmp}/superapp-passes.XXXXXX") || exit 1
trap 'rm -rf "$CACHES"' EXIT
export SUPERAPP_AUDIT_CACHE="$CACHES/audit-passed" SUPERAPP_VALIDATE_CACHE="$CACHES/validate-passed"

TESTBED="testbed up, Vault bootstrap, first deploy"
HOSTS_ONLY="integration tests that need the hosts only (database HA)"
AUDIT="secret scan + dependency audit (nice 19)"
# The hosts-only tests (marker `hosts_only`: their own containers on a testbed host, no Vault,
# no deploy; the database HA cluster, about 6 min of waiting on leases) start as soon as the
# hosts are up, beside the first deploy and the unit tests, and go on beside the first
# integration modules (they ended 106 s after the unit tests when the integration tests waited
# for them). Those modules (BESIDE_HOSTS_ONLY, about 10 min) never take a host's SSH or network
# away: test_crash stops host2's sshd, test_firewall shuts the controller out of a host, so
# the rest waits for the hosts-only tests. UP says whether the hosts came up ("up"), or not
# ("down"): they never wait on a phase that failed.
UP="$CACHES/testbed-up"

phase "lint (ruff)" .venv/bin/ruff check .
start_background "$AUDIT" nice -n 19 $PY -m ops.audit --ci
start_background "$TESTBED" bash -c "set -e
  $PY testbed/testbed.py up && echo up >$UP || { echo down >$UP; exit 1; }
  $PY -m ops.secrets.bootstrap local
  echo '--> deploying the release of this checkout: the integration tests start from it'
  .venv/bin/pyinfra -y inventories/local.py deploy.py"
start_background "$HOSTS_ONLY" bash -c "
  for i in \$(seq 900); do [ -s $UP ] && break; sleep 2; done  # at most 30 min
  [ \"\$(cat $UP 2>/dev/null)\" = up ] || { echo 'not run: the testbed did not come up'; exit 1; }
  .venv/bin/pytest -q -m 'integration and hosts_only' --durations=10 tests/integration"
phase "unit tests" .venv/bin/pytest -q -m "not integration" tests/unit
wait_background "$TESTBED"
failed_already "$HOSTS_ONLY"  # a failure already: stop before the long phase
failed_already "$AUDIT"  # a blocking finding already: stop before the long phase
BESIDE_HOSTS_ONLY=(tests/integration/test_backup.py tests/integration/test_canary.py
                   tests/integration/test_central_logs.py)
INTEGRATION=(.venv/bin/pytest -q -m "integration and not hosts_only and not whole_fleet"
             --durations=30)
phase "integration tests, beside the hosts-only ones" "${INTEGRATION[@]}" "${BESIDE_HOSTS_ONLY[@]}"
wait_background "$HOSTS_ONLY"
phase "integration tests" "${INTEGRATION[@]}" "${BESIDE_HOSTS_ONLY[@]/#/--ignore=}" \
  tests/integration
# last: the fleet moves to the database cluster and back (marker `whole_fleet`)
phase "integration tests that reshape the whole fleet (database cluster)" \
  .venv/bin/pytest -q -m "integration and whole_fleet" --durations=10 tests/integration
wait_background "$AUDIT"
phase "testbed down (checked)" .venv/bin/pytest -q tests/teardown
summary
