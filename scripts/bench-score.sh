#!/usr/bin/env bash
# What the anti-spam score costs the write path, measured as steadily as a shared machine allows: two
# servers side by side (bench.sh's policies: the score on every request with nothing in its way, and
# anti-spam off), and `gatehouse-bench cycles` against each in turn, ROUNDS times, for one worker, eight
# workers with one principal each, and eight workers over 200 principals. Each line prints both rates, their
# ratio, and the server's CPU time per cycle (from /proc) on and off.
#   scripts/bench-score.sh             DURATION=6 (seconds per run), ROUNDS=3
#   SERVER_BIN=/path/to/gatehouse scripts/bench-score.sh   runs another build of the server (to compare two)
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --scratch-path .build-release --product gatehouse
swift build -c release --scratch-path .build-release --product gatehouse-bench
BIN=$(swift build -c release --scratch-path .build-release --show-bin-path)
SERVER=${SERVER_BIN:-$BIN/gatehouse}
DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18401}
WORK=$(mktemp -d)
trap 'kill ${ON_PID:-} ${OFF_PID:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
. scripts/bench-policy.sh
bench_policies "$WORK"
export GATEHOUSE_ADMIN_TOKEN=bench-admin-token-0123456789
"$SERVER" serve --policy "$WORK/policy.yaml" --database "sqlite:$WORK/on.db" --port "$PORT" --log-level error &
ON_PID=$!
"$SERVER" serve --policy "$WORK/policy-off.yaml" --database "sqlite:$WORK/off.db" --port $((PORT + 1)) --log-level error &
OFF_PID=$!
for port in "$PORT" $((PORT + 1)); do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # user + system time, in clock ticks
run() {  # run PID PORT ARGS...: "cycles rate cpu-ticks"
  local pid=$1 port=$2; shift 2
  local before out
  before=$(cpu "$pid")
  out=$("$BIN/gatehouse-bench" cycles --url "http://127.0.0.1:$port" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$DURATION" "$@")
  echo "$out" | sed -n 's/.*: \([0-9]*\) request+approve cycles in.*= \([0-9]*\) cycles.*/\1 \2/p' | tr '\n' ' '
  echo $(( $(cpu "$pid") - before ))
}
echo "== machine: $(nproc) cores; score on / off, ${DURATION}s per run, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  for args in "--concurrency 1" "--concurrency 8" "--concurrency 8 --principals 200"; do
    # shellcheck disable=SC2086
    read -r on_n on_rate on_ticks <<< "$(run "$ON_PID" "$PORT" $args)"
    # shellcheck disable=SC2086
    read -r off_n off_rate off_ticks <<< "$(run "$OFF_PID" $((PORT + 1)) $args)"
    python3 -c "
import os, sys
tick = 1000 / os.sysconf('SC_CLK_TCK')
on_n, on_rate, on_t, off_n, off_rate, off_t = map(int, sys.argv[2:])
print('%-34s on %4d/s  off %4d/s  ratio %.2f   server CPU per cycle on %.2f ms, off %.2f ms' % (
    sys.argv[1], on_rate, off_rate, on_rate / off_rate, on_t * tick / on_n, off_t * tick / off_n))" \
      "$args" "$on_n" "$on_rate" "$on_ticks" "$off_n" "$off_rate" "$off_ticks"
  done
done
