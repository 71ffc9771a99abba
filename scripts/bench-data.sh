#!/usr/bin/env bash
# Cost as the data grows (BENCHMARKS.md): an audit log of 10^4, 10^5 and 10^6 events on SQLite, and for
# each size the time and peak memory of
#   verify   GET /v1/audit/verify on a running server (time of the call; the server's peak resident
#            memory over its idle size, from /proc)
#   export   gatehouse export --database ... -o FILE   (wall time, peak resident memory of the process)
#   import   gatehouse import --database NEW -i FILE   (the same)
# The cost per 10^4 events should stay flat from one size to the next, and memory should not grow with it.
# Then a store with 10^3, 10^4 and 10^5 past requests (each approved, its grant long expired) plus the 1,000
# active grants of bench.sh's set-up, and for each size, wrk for 5 s with 8 connections on
#   check            POST /v1/check (bench.sh's script)
#   requests (all)   GET /v1/requests?scope=all&limit=100 as the admin
#   requests (all, half way)  the same from a cursor half way down the history
#   requests (mine)  GET /v1/requests as one requester
#   grants (all)     GET /v1/grants?scope=all&limit=100 as the admin, and from half way down
#   web inbox        GET /inbox for an approver with 20 requests waiting (server-rendered HTML)
# The p50 and p99 latencies should not grow with the history. Last, checks against 10^3..10^5 grants in force.
#   scripts/bench-data.sh            SIZES="10000 100000 1000000", HISTORY_SIZES="1000 10000 100000",
#                                    ACTIVE_SIZES="1000 10000 100000" by default;
#                                    release build in .build-release
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh time wrk
swift build -c release --scratch-path .build-release --product gatehouse
swift build -c release --scratch-path .build-release --product gatehouse-bench
BIN=$(swift build -c release --scratch-path .build-release --show-bin-path)
SIZES=${SIZES-10000 100000 1000000}
WORK=$(mktemp -d)
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
export GATEHOUSE_ADMIN_TOKEN=bench-admin-token-0123456789
printf 'version: 1\nprincipals: {alice: {groups: [engineers]}}\nresources:\n  db0: {kind: postgres, roles: {read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}}}\n' > "$WORK/policy.yaml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$SERVER_PID/status"; }
since() { python3 -c "import sys,time; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$1"; }  # seconds since a date +%s.%N
serve() {  # serve POLICY DATABASE: starts gatehouse (SERVER_PID, URL) and waits until it is ready
  "$BIN/gatehouse" serve --policy "$1" --database "$2" --port "$port" --log-level error >"$WORK/serve.log" 2>&1 &
  SERVER_PID=$!
  URL=http://127.0.0.1:$port
  for _ in $(seq 1 600); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }
team_policy() {  # team_policy RESOURCES: u000..u199 (engineers), ops1 and ops2, db0..db(RESOURCES-1), anti-spam off
  echo "version: 1"
  echo "principals:"
  for i in $(seq -f "%03g" 0 199); do echo "  u$i: {groups: [engineers]}"; done
  echo "  ops1: {groups: [ops]}"
  echo "  ops2: {groups: [ops]}"
  echo "resources:"
  for r in $(seq 0 $(($1 - 1))); do
    echo "  db$r: {kind: postgres, roles: {read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}, write: {requesters: [engineers], approvers: [ops], approvals: 1, max_duration: 1h, allows: write}}}"
  done
  echo "antispam: {enabled: false}"
}

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(swift --version 2>/dev/null | head -1)"
printf '%-9s | %-30s | %-34s | %-34s\n' events "verify: s (per 10^4), peak MB" "export: s (per 10^4), peak MB" "import: s (per 10^4), peak MB"
for n in $SIZES; do
  db=$WORK/audit-$n.db
  "$BIN/gatehouse-bench" audit-log --database "sqlite:$db" --events "$n" >/dev/null
  serve "$WORK/policy.yaml" "sqlite:$db"
  idle=$(kb VmRSS)
  start=$(date +%s.%N)
  curl -fs -H "Authorization: Bearer $GATEHOUSE_ADMIN_TOKEN" "$URL/v1/audit/verify" | grep -q '"ok":true' \
    || { echo "verify did not pass on $n events" >&2; exit 1; }
  verify_s=$(since "$start")
  peak=$(kb VmHWM)
  stop_server
  /usr/bin/time -f "%e %M" -o "$WORK/export.time" "$BIN/gatehouse" export --database "sqlite:$db" -o "$WORK/export.jsonl" 2>/dev/null
  /usr/bin/time -f "%e %M" -o "$WORK/import.time" "$BIN/gatehouse" import --database "sqlite:$WORK/imported-$n.db" -i "$WORK/export.jsonl" >/dev/null
  read -r export_s export_kb < "$WORK/export.time"
  read -r import_s import_kb < "$WORK/import.time"
  python3 - "$n" "$verify_s" "$idle" "$peak" "$export_s" "$export_kb" "$import_s" "$import_kb" <<'EOF'
import sys
n, verify_s, idle, peak, export_s, export_kb, import_s, import_kb = sys.argv[1:]
n = int(n); per = lambda s: float(s) / n * 1e4
print(f"{n:<9} | {float(verify_s):6.2f} ({per(verify_s):.3f}), +{(int(peak) - int(idle)) / 1024:5.1f} over {int(idle) / 1024:.0f}".ljust(32)
      + f" | {float(export_s):6.2f} ({per(export_s):.3f}), {int(export_kb) / 1024:6.1f}".ljust(36)
      + f" | {float(import_s):6.2f} ({per(import_s):.3f}), {int(import_kb) / 1024:6.1f}")
EOF
  rm -f "$db"* "$WORK/export.jsonl" "$WORK/imported-$n.db"*
done

HISTORY_SIZES=${HISTORY_SIZES-1000 10000 100000}
team_policy 5 > "$WORK/history.yaml"
latency() {  # latency [wrk args]: "p50 / p99 (requests/s)"
  wrk -t1 -c8 -d5s --latency "$@" | awk '/^ +50%/ {p50 = $2} /^ +99%/ {p99 = $2} /Requests\/sec/ {rps = $2} /Non-2xx/ {bad = $0}
    END {printf "%s / %s (%d/s)%s", p50, p99, rps, bad ? " " bad : ""}'
}
echo
printf '%-9s | %-28s | %-28s | %-28s | %-28s | %-28s | %-28s | %-28s\n' history "check: p50 / p99 (per s)" "requests, all" \
  "requests, all, half way" "requests, mine" "grants, all" "grants, all, half way" "web inbox (20 waiting)"
for n in $HISTORY_SIZES; do
  db=$WORK/history-$n.db
  "$BIN/gatehouse-bench" history --database "sqlite:$db" --count "$n" >"$WORK/history.out" 2>&1
  requests_cursor=$(awk '$1 == "requests-cursor" {print $2}' "$WORK/history.out")
  grants_cursor=$(awk '$1 == "grants-cursor" {print $2}' "$WORK/history.out")
  serve "$WORK/history.yaml" "sqlite:$db"
  "$BIN/gatehouse-bench" setup --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --users 200 --resources 5 --lua "$WORK/check.lua" >/dev/null
  USER_TOKEN=$(GATEHOUSE_URL=$URL GATEHOUSE_TOKEN=$GATEHOUSE_ADMIN_TOKEN "$BIN/gatehouse" token create u007 2>/dev/null)
  admin=(-H "Authorization: Bearer $GATEHOUSE_ADMIN_TOKEN")
  # 20 requests waiting for ops1, who signs in to the web inbox.
  for i in $(seq -f "%03g" 0 19); do
    GATEHOUSE_URL=$URL GATEHOUSE_TOKEN=$("$BIN/gatehouse" token create "u$i" --url "$URL" --token "$GATEHOUSE_ADMIN_TOKEN" 2>/dev/null) \
      "$BIN/gatehouse" request "db$((10#$i % 5))" --role write --for 30m --reason "INC-$i look at the slow invoice export" >/dev/null
  done
  OPS_TOKEN=$("$BIN/gatehouse" token create ops1 --url "$URL" --token "$GATEHOUSE_ADMIN_TOKEN" 2>/dev/null)
  CSRF=$(curl -fs -c "$WORK/jar" "$URL/sign-in" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p')
  curl -fs -o /dev/null -b "$WORK/jar" -c "$WORK/jar" --data-urlencode "csrf=$CSRF" --data-urlencode "token=$OPS_TOKEN" "$URL/sign-in"
  COOKIE=$(awk '$6 == "gatehouse_session" {print $7}' "$WORK/jar")
  rows=$(curl -fs -H "Cookie: gatehouse_session=$COOKIE" "$URL/inbox" | grep -c '<a href="/requests/' || true)
  [ "$rows" -ge 20 ] || { echo "the inbox shows $rows requests, expected 20" >&2; exit 1; }
  curl -fs "${admin[@]}" "$URL/v1/requests?scope=all&limit=100&cursor=$requests_cursor" | grep -q '"req_h' \
    || { echo "the half-way page of requests is empty" >&2; exit 1; }
  printf '%-9s | %-28s | %-28s | %-28s | %-28s | %-28s | %-28s | %-28s\n' "$n" "$(latency -s "$WORK/check.lua" "$URL")" \
    "$(latency "${admin[@]}" "$URL/v1/requests?scope=all&limit=100")" \
    "$(latency "${admin[@]}" "$URL/v1/requests?scope=all&limit=100&cursor=$requests_cursor")" \
    "$(latency -H "Authorization: Bearer $USER_TOKEN" "$URL/v1/requests")" \
    "$(latency "${admin[@]}" "$URL/v1/grants?scope=all&limit=100")" \
    "$(latency "${admin[@]}" "$URL/v1/grants?scope=all&limit=100&cursor=$grants_cursor")" \
    "$(latency -H "Cookie: gatehouse_session=$COOKIE" "$URL/inbox")"
  stop_server
  rm -f "$db"*
done

# Checks against the number of grants in force: 10^3, 10^4, 10^5 active grants (one per principal and
# resource, u000..u199 on as many resources as that takes), plus the 1,000 of bench.sh's set-up. For each
# size: how long the server takes to answer /readyz, its resident memory idle and after the runs, check
# latency (wrk 5 s, 8 connections), and the first page of active grants. Checks are answered from memory
# after the first for each principal and resource; every commit empties that memory, so the store's own
# lookup (an index on principal and resource) is measured too, in the first second.
ACTIVE_SIZES=${ACTIVE_SIZES-1000 10000 100000}
echo
printf '%-9s | %-9s | %-20s | %-28s | %-28s\n' active "ready (s)" "memory idle / after" "check: p50 / p99 (per s)" "grants, active, first page"
for n in $ACTIVE_SIZES; do
  db=$WORK/active-$n.db
  team_policy $(( n / 200 > 5 ? n / 200 : 5 )) > "$WORK/active.yaml"
  "$BIN/gatehouse-bench" active-grants --database "sqlite:$db" --count "$n" >/dev/null
  start=$(date +%s.%N)
  serve "$WORK/active.yaml" "sqlite:$db"
  ready_s=$(since "$start")
  idle=$(kb VmRSS)
  "$BIN/gatehouse-bench" setup --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --users 200 --resources 5 --lua "$WORK/check.lua" >/dev/null
  admin=(-H "Authorization: Bearer $GATEHOUSE_ADMIN_TOKEN")
  listed=$(curl -fs "${admin[@]}" "$URL/v1/grants?scope=all&active=true&limit=1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["grants"]))')
  [ "$listed" = 1 ] || { echo "no active grant listed at $n" >&2; exit 1; }
  check=$(latency -s "$WORK/check.lua" "$URL")
  grants=$(latency "${admin[@]}" "$URL/v1/grants?scope=all&active=true&limit=100")
  after=$(kb VmHWM)
  printf '%-9s | %-9s | %-20s | %-28s | %-28s\n' "$n" "$ready_s" "$((idle / 1024)) / $((after / 1024)) MB" "$check" "$grants"
  stop_server
  rm -f "$db"*
done
