#!/usr/bin/env bash
# The whole test suite: unit tests, HTTP tests on real SQLite files and on a real PostgreSQL server
# over loopback, several server processes on one PostgreSQL database, and the README walkthrough
# with the real binary. Installs what it needs first and starts (and stops) a throwaway PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
PGDIR=$(mktemp -d /tmp/gatehouse-test-pg.XXXXXX)
trap 'scripts/postgres-server.sh stop "$PGDIR"; rm -rf "$PGDIR"' EXIT
export GATEHOUSE_TEST_POSTGRES=$(scripts/postgres-server.sh start "$PGDIR")
# The OpenID Connect provider the sign-in tests use: its virtual environment, from PyPI, made once.
scripts/oidc-provider.sh prepare
swift build --build-tests
# A crash prints the crashed thread's backtrace last, where a log's tail shows it.
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=yes,threads=crashed,images=mentioned}
# A pass that runs past its limit (each takes minutes) is stopped, naming the tests that never ended.
timed_pass() {
  local limit=$1 log status tee_pid
  shift
  log=$(mktemp /tmp/gatehouse-test-log.XXXXXX)
  # tee in a process substitution, not a pipe: a process a test left behind holding the output open
  # would otherwise keep the pipe, and the test command, from ending.
  local out
  exec {out}> >(tee "$log")
  tee_pid=$!
  set +e
  timeout --kill-after=30s "$limit" "$@" >&"$out" 2>&1
  status=$?
  set -e
  exec {out}>&-
  # tee ends when the pass's output does; a process left behind holding it is not waited for past 10 s.
  for _ in $(seq 100); do kill -0 "$tee_pid" 2>/dev/null || break; sleep 0.1; done
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "the tests did not finish within $limit; started and never ended:"
    python3 scripts/unfinished-tests.py "$log"
  fi
  rm -f "$log"
  return "$status"
}
# Everything, the server tests on SQLite files...
timed_pass 40m swift test --skip-build
# ...and the server tests again with every test server on its own PostgreSQL database.
# (The suites that always use PostgreSQL, or SQLite on purpose, ran in the first pass; the sign-in suites
# meet a real provider once, their store queries run on both stores in GatehouseStoreTests.)
GATEHOUSE_TEST_STORE=postgres timed_pass 25m swift test --skip-build --filter GatehouseServerTests \
  --skip "MultiInstanceTests|PostgresOutageTests|TransferTests|IDTokenTests|ProviderSignInTests"
scripts/walkthrough-test.sh .build/debug/gatehouse
# The API contract from outside: schemathesis (from PyPI) against a live server, all checks.
scripts/contract-test.sh .build/debug/gatehouse
# The benchmark's ratios, a few seconds each: a figure that falls by half fails the run.
scripts/bench-smoke.sh .build/debug
# The web inbox in headless Chromium (screenshots kept in test-artifacts/browser/).
scripts/browser-test.sh .build/debug/gatehouse
echo "all tests passed"
