#!/usr/bin/env bash
# Check throughput of several builds of gatehouse, taking turns on one machine (the way BENCHMARKS.md
# compares a change with the build before it): a policy with 200 users and 5 resources, 1,000 active grants
# set up once, then for each round and each build a fresh copy of that store, `POST /v1/check` and
# `GET /healthz` (wrk, 1 thread, 16 connections), and their ratio.
#   scripts/bench-check-ab.sh BIN1 BIN2 ...     (paths to gatehouse binaries, release builds)
#   ROUNDS=3 DURATION=8 PORT=18291
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
[ $# -ge 1 ] || { echo "usage: scripts/bench-check-ab.sh GATEHOUSE_BIN..." >&2; exit 2; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
swift build -c release --scratch-path .build-release --product gatehouse-bench >/dev/null
BENCH=$(swift build -c release --scratch-path .build-release --show-bin-path)/gatehouse-bench
WORK=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
. scripts/bench-policy.sh
bench_policies "$WORK" 200 5
export GATEHOUSE_ADMIN_TOKEN=bench-admin-token-0123456789
PORT=${PORT:-18291} ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-8}
URL=http://127.0.0.1:$PORT
serve() {  # serve BIN DB
  "$1" serve --policy "$WORK/policy-off.yaml" --database "sqlite:$2" --port "$PORT" --log-level error >"$WORK/serve.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 300); do curl -fs --max-time 1 "$URL/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  cat "$WORK/serve.log" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
serve "$1" "$WORK/template.db"
"$BENCH" setup --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --users 200 --resources 5 --lua "$WORK/check.lua" >/dev/null
stop
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    rm -f "$WORK"/run.db*; cp "$WORK/template.db" "$WORK/run.db"
    serve "$bin" "$WORK/run.db"
    check=$(wrk -t1 -c16 -d"${DURATION}s" -s "$WORK/check.lua" "$URL" | awk '/Requests\/sec/ {print $2}')
    health=$(wrk -t1 -c16 -d"${DURATION}s" "$URL/healthz" | awk '/Requests\/sec/ {print $2}')
    stop
    echo "round $round $bin: check/s $check healthz/s $health ratio $(python3 -c "print(f'{$check / $health:.3f}')")"
  done
done
