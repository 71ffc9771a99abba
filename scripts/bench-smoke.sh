#!/usr/bin/env bash
# The benchmark's smoke run, part of the test command: a few seconds of each figure BENCHMARKS.md
# tracks as a ratio to a baseline measured in the same run, on the debug build the tests use:
#   check       POST /v1/check (role) per second / GET /healthz per second        (wrk, 8 connections)
#   action      POST /v1/check with a read SQL action / GET /healthz
#   classify    SQL classification / PostgreSQL's parser alone                    (in-process, one core)
#   cycles      request+approve cycles with the anti-spam score on / anti-spam off (4 workers)
# Each ratio must be at least half the one in scripts/bench-smoke.baseline (measured the same way on
# a debug build): a figure that falls by half fails the run. A ratio under its floor is measured once
# more before it fails, so one noisy moment on a shared machine does not.
#   scripts/bench-smoke.sh [BIN_DIR]   (default .build/debug)
#   SMOKE_SECONDS=N                   seconds per measurement (default 3)
#   SMOKE_RECORD=1                    print the ratios in the baseline's format instead of checking
set -euo pipefail
shopt -s inherit_errexit
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$(cd "${1:-$REPO/.build/debug}" && pwd)
SECONDS_EACH=${SMOKE_SECONDS:-3}
WORK=$(mktemp -d)
PIDS=()
trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export GATEHOUSE_ADMIN_TOKEN=smoke-admin-token-0123456789

. scripts/bench-policy.sh
bench_policies "$WORK" 20 2  # u000..u019, ops1 and ops2

serve() {  # serve POLICY NAME: starts a server, sets URL
  local port; port=$(free_port)
  "$BIN/gatehouse" serve --policy "$1" --database "sqlite:$WORK/$2.db" --port "$port" --log-level error >"$WORK/$2.log" 2>&1 &
  PIDS+=($!)
  URL=http://127.0.0.1:$port
  for _ in $(seq 1 150); do curl -fs --max-time 1 "$URL/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  cat "$WORK/$2.log" >&2; echo "bench smoke: the server did not start" >&2; exit 1
}
per_second() {  # wrk's requests/s; every answer must have been 2xx, over connections that held
  local out; out=$(wrk -t1 -c8 -d"${SECONDS_EACH}s" "$@")
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then echo "bench smoke: wrk $* saw errors: $out" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}
ratio() {  # ratio A B: both must be positive numbers
  python3 -c "
import sys
a, b = (float(x) if x.replace('.', '', 1).isdigit() else 0.0 for x in sys.argv[1:3])
if a <= 0 or b <= 0: sys.exit(f'bench smoke: not a measurement: {sys.argv[1]!r} / {sys.argv[2]!r}')
print(f'{a / b:.3f}')" "$1" "$2"
}

serve "$WORK/policy.yaml" on
ON_URL=$URL
"$BIN/gatehouse-bench" setup --url "$ON_URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --users 20 --resources 5 --lua "$WORK/check.lua" >/dev/null
serve "$WORK/policy-off.yaml" off
OFF_URL=$URL

measure() {  # measure NAME: prints the ratio
  case $1 in
    check) ratio "$(per_second -s "$WORK/check.lua" "$ON_URL")" "$(per_second "$ON_URL/healthz")" ;;
    action) ratio "$(per_second -s "$WORK/check-action.lua" "$ON_URL")" "$(per_second "$ON_URL/healthz")" ;;
    classify)
      local line; line=$("$BIN/gatehouse-bench" classify --seconds "$SECONDS_EACH" | awk '/^mix: / {v = $NF} END {print v}')
      ratio "$line" 1 ;;
    cycles)
      local on off
      on=$("$BIN/gatehouse-bench" cycles --url "$ON_URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$SECONDS_EACH" --concurrency 4 | sed -nE 's/.* = ([0-9.]+) cycles\/s.*/\1/p')
      off=$("$BIN/gatehouse-bench" cycles --url "$OFF_URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$SECONDS_EACH" --concurrency 4 | sed -nE 's/.* = ([0-9.]+) cycles\/s.*/\1/p')
      ratio "$on" "$off" ;;
  esac
}

failed=0
for name in check action classify cycles; do
  got=$(measure "$name")
  if [ -n "${SMOKE_RECORD:-}" ]; then echo "$name $got"; continue; fi
  base=$(awk -v n="$name" '$1 == n {print $2}' "$REPO/scripts/bench-smoke.baseline")
  [ -n "$base" ] || { echo "bench smoke: no baseline for $name in scripts/bench-smoke.baseline" >&2; exit 1; }
  below() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) / 2 else 1)" "$1" "$base"; }
  if below "$got"; then
    again=$(measure "$name")
    echo "bench smoke: $name ratio $got, under half the baseline $base; measured again: $again"
    got=$again
  fi
  if below "$got"; then
    echo "bench smoke FAILED: $name ratio $got is under half the baseline $base (scripts/bench-smoke.baseline)" >&2
    failed=1
  else
    echo "bench smoke: $name ratio $got (baseline $base, floor $(python3 -c "import sys; print(float(sys.argv[1]) / 2)" "$base"))"
  fi
done
[ "$failed" = 0 ] || exit 1
[ -n "${SMOKE_RECORD:-}" ] || echo "bench smoke passed"
