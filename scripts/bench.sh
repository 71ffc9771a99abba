#!/usr/bin/env bash
# Reproduces the figures in BENCHMARKS.md: POST /v1/check throughput and latency with wrk over
# loopback keep-alive HTTP with 1,000 active grants in the store, and request+approve cycles/s.
# Release build, SQLite store in a temporary folder; then the same on a local PostgreSQL server, with one
# and two instances (SKIP_POSTGRES=1 leaves that out).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh wrk
swift build -c release --scratch-path .build-release --product gatehouse
swift build -c release --scratch-path .build-release --product gatehouse-bench
BIN=$(swift build -c release --scratch-path .build-release --show-bin-path)
WORK=$(mktemp -d)
PORT=${PORT:-18181}
DURATION=${DURATION:-20}
trap 'kill $SERVER_PID ${SERVER2_PID:-} 2>/dev/null; wait 2>/dev/null; [ -n "${PGDIR:-}" ] && { scripts/postgres-server.sh stop "$PGDIR"; rm -rf "$PGDIR"; }; rm -rf "$WORK"' EXIT

. scripts/bench-policy.sh
bench_policies "$WORK"

export GATEHOUSE_ADMIN_TOKEN=bench-admin-token-0123456789
"$BIN/gatehouse" serve --policy "$WORK/policy.yaml" --database "sqlite:$WORK/bench.db" --port "$PORT" --log-level warning &
SERVER_PID=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(swift --version 2>/dev/null | head -1)"
"$BIN/gatehouse-bench" setup --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --users 200 --resources 5 --lua "$WORK/check.lua"
TOKEN=$(GATEHOUSE_URL=$URL GATEHOUSE_TOKEN=$GATEHOUSE_ADMIN_TOKEN "$BIN/gatehouse" token create u007)
GATEHOUSE_URL=$URL GATEHOUSE_TOKEN=$TOKEN "$BIN/gatehouse" check db3 --role read >/dev/null || { echo "sanity check: u007 should be allowed"; exit 1; }

echo "== POST /v1/check, wrk 1 thread, 16 connections, ${DURATION}s"
# PROFILE=FILE records a perf profile of the server during the check run.
[ -n "${PROFILE:-}" ] && { perf record -F 999 -g -o "$PROFILE" -p "$SERVER_PID" -- sleep $((DURATION / 2)) >/dev/null 2>&1 & }
wrk -t1 -c16 -d"${DURATION}s" --latency -s "$WORK/check.lua" "$URL" | grep -E "Requests/sec|Latency|50%|90%|99%|requests in|Non-2xx"
echo "== POST /v1/check with a SQL action (read statements; classification remembered after the first of each), wrk 1 thread, 16 connections, ${DURATION}s"
wrk -t1 -c16 -d"${DURATION}s" --latency -s "$WORK/check-action.lua" "$URL" | grep -E "Requests/sec|Latency|50%|90%|99%|requests in|Non-2xx"
echo "== GET /healthz (baseline: HTTP stack without auth or store), wrk 1 thread, 16 connections, ${DURATION}s"
wrk -t1 -c16 -d"${DURATION}s" --latency "$URL/healthz" | grep -E "Requests/sec|Latency|50%|99%"
echo "== in-process SQL classification, one thread (one core)"
"$BIN/gatehouse-bench" classify --seconds "$DURATION"
echo "== in-process spam score (100 own and 200 other requests in the history), one thread"
"$BIN/gatehouse-bench" score --seconds 4
# Cycles twice: one principal per worker (each files hundreds of requests a minute, so its own history and
# the others' window are always full), then 200 principals shared by the workers (a few each a minute).
cycles() {
  for workers in 1 8; do
    "$BIN/gatehouse-bench" cycles --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$DURATION" --concurrency "$workers"
  done
  for workers in 1 8; do
    "$BIN/gatehouse-bench" cycles --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$DURATION" --concurrency "$workers" --principals 200
  done
}
echo "== request+approve cycles"
[ -n "${SKIP_CYCLES:-}" ] || cycles
if [ -z "${SKIP_CYCLES:-}" ]; then
  echo "== request+approve cycles with anti-spam off (baseline for the score's cost)"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  "$BIN/gatehouse" serve --policy "$WORK/policy-off.yaml" --database "sqlite:$WORK/bench-off.db" --port "$PORT" --log-level warning &
  SERVER_PID=$!
  for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  cycles
fi
echo "== flood: honest request+approve cycles (20/s) alone, then while one principal floods with 8 workers"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
"$BIN/gatehouse" serve --policy "$WORK/policy-flood.yaml" --database "sqlite:$WORK/bench-flood.db" --port "$PORT" --log-level error &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/gatehouse-bench" flood --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$DURATION" --rate 20 --concurrency 8
echo "== flood: the same, while 10 principals flood over 100 keep-alive connections"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
"$BIN/gatehouse" serve --policy "$WORK/policy-flood.yaml" --database "sqlite:$WORK/bench-flood10.db" --port "$PORT" --log-level error &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/gatehouse-bench" flood --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$DURATION" --rate 20 --concurrency 100 --principals 10

[ -n "${SKIP_POSTGRES:-}" ] && exit 0
# The same check and cycle runs on PostgreSQL (a local server with fsync on, as SQLite's synchronous=FULL),
# with one instance and then two on one database. Anti-spam off, as the SQLite cycles baseline above.
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
PGDIR=$(mktemp -d /tmp/gatehouse-bench-pg.XXXXXX)
PGURL=$(PG_FSYNC=on scripts/postgres-server.sh start "$PGDIR")
psql -q "$PGURL" -c "CREATE DATABASE bench"
PGBENCH="${PGURL%/*}/bench?pool_max=10"
"$BIN/gatehouse" serve --policy "$WORK/policy-off.yaml" --database "$PGBENCH" --port "$PORT" --log-level warning &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/gatehouse-bench" setup --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --users 200 --resources 5 --lua "$WORK/check-pg.lua"
echo "== PostgreSQL, one instance: POST /v1/check, wrk 1 thread, 16 connections, ${DURATION}s"
wrk -t1 -c16 -d"${DURATION}s" --latency -s "$WORK/check-pg.lua" "$URL" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx"
echo "== PostgreSQL, one instance: request+approve cycles"
"$BIN/gatehouse-bench" cycles --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$DURATION" --concurrency 1
"$BIN/gatehouse-bench" cycles --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$DURATION" --concurrency 8
PORT2=$((PORT + 1)); URL2=http://127.0.0.1:$PORT2
"$BIN/gatehouse" serve --policy "$WORK/policy-off.yaml" --database "$PGBENCH" --port "$PORT2" --log-level warning &
SERVER2_PID=$!
for _ in $(seq 1 100); do curl -fs "$URL2/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "== PostgreSQL, two instances: POST /v1/check, one wrk (1 thread, 8 connections) on each, ${DURATION}s"
wrk -t1 -c8 -d"${DURATION}s" --latency -s "$WORK/check-pg.lua" "$URL" > "$WORK/wrk1.txt" &
WRK1=$!
wrk -t1 -c8 -d"${DURATION}s" --latency -s "$WORK/check-pg.lua" "$URL2" > "$WORK/wrk2.txt"
wait "$WRK1"
grep -E "Requests/sec|99%|Non-2xx" "$WORK/wrk1.txt" "$WORK/wrk2.txt"
awk '/Requests\/sec/ {sum += $2} END {printf "both instances together: %.0f requests/s\n", sum}' "$WORK/wrk1.txt" "$WORK/wrk2.txt"
echo "== PostgreSQL, two instances: a grant revoked on one, until the other stops allowing it (its cache follows the change counter)"
"$BIN/gatehouse-bench" revoke-delay --url "$URL,$URL2" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --rounds 100
echo "== PostgreSQL, two instances: request+approve cycles (filed on one, approved on the other)"
"$BIN/gatehouse-bench" cycles --url "$URL,$URL2" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$DURATION" --concurrency 8
