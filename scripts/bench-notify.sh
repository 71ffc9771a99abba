#!/usr/bin/env bash
# Reproduces the "Web inbox and webhooks" figures in BENCHMARKS.md, on a release build over loopback:
#  1. request+approve cycles (8 workers) on a server without webhooks, then on one whose outbox sends
#     every event to a local receiver: the ratio is what the outbox costs the write path (with the CPU time
#     per cycle of the server and of the receiver, which share the machine's cores);
#  2. delivery lag: from each event's audit time to its arrival at the receiver (p50, p99), and how long
#     the outbox needs to drain after the load stops;
#  3. GET /inbox (server-rendered HTML, session cookie) against GET /v1/requests?scope=to_approve (JSON,
#     bearer token) for an approver with 50 waiting requests, with wrk: the ratio is what rendering costs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh wrk
swift build -c release --scratch-path .build-release --product gatehouse
swift build -c release --scratch-path .build-release --product gatehouse-bench
BIN=$(swift build -c release --scratch-path .build-release --show-bin-path)
WORK=$(mktemp -d)
PORT=${PORT:-18281}
RPORT=$((PORT + 1))
DURATION=${DURATION:-20}
URL=http://127.0.0.1:$PORT
trap 'kill ${SERVER_PID:-} ${RECEIVER_PID:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

{
  echo "version: 1"
  echo "principals:"
  for i in $(seq -f "%03g" 0 199); do echo "  u$i: {groups: [engineers]}"; done
  for i in 1 2 3 4 5; do echo "  ops$i: {groups: [ops]}"; done
  echo "resources:"
  for r in 0 1 2 3 4; do
    echo "  db$r:"
    echo "    kind: postgres"
    echo "    roles:"
    echo "      write: {requesters: [engineers], approvers: [ops], approvals: 1, max_duration: 1h, allows: write}"
  done
  echo "antispam: {enabled: false}"
} > "$WORK/base.yaml"
{
  cat "$WORK/base.yaml"
  echo "notifications:"
  echo "  webhooks:"
  echo "    receiver: {url: \"http://127.0.0.1:$RPORT/hook\", secret_env: BENCH_WEBHOOK_SECRET, events: [all]}"
} > "$WORK/webhooks.yaml"
export BENCH_WEBHOOK_SECRET=whsec_$(openssl rand -base64 32)
export GATEHOUSE_ADMIN_TOKEN=bench-admin-token-0123456789

# The receiver answers 200 and records each message's lag: `gatehouse-bench receive` (native, light, so the
# figure is the outbox's cost and not a receiver's competing for the same cores), or with RECEIVER=python the
# threaded Python HTTP server used before.
cat > "$WORK/receiver.py" <<'EOF'
import http.server, json, socketserver, sys, time, datetime
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        sent = datetime.datetime.fromisoformat(json.loads(body)["timestamp"].replace("Z", "+00:00")).timestamp()
        with open(sys.argv[2], "a") as f:
            f.write("%s %.4f\n" % (self.headers.get("webhook-id"), time.time() - sent))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
EOF
if [ "${RECEIVER:-native}" = python ]; then
  python3 "$WORK/receiver.py" "$RPORT" "$WORK/lags.txt" &
else
  "$BIN/gatehouse-bench" receive --port "$RPORT" --log "$WORK/lags.txt" &
fi
RECEIVER_PID=$!

start_server() {
  # SERVER_BIN runs another build of the server (to compare two versions on the same machine).
  "${SERVER_BIN:-$BIN/gatehouse}" serve --policy "$1" --database "sqlite:$WORK/$2.db" --port "$PORT" --log-level error &
  SERVER_PID=$!
  for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
cpu_ms() { # PID: its user + system CPU time so far, in milliseconds
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) * 1000 / hz }' "/proc/$1/stat"
}
# Runs the cycles and prints, besides their figures, the CPU time per cycle of the server and the receiver.
cycles() {
  local server_before receiver_before out n
  server_before=$(cpu_ms "$SERVER_PID"); receiver_before=$(cpu_ms "$RECEIVER_PID")
  out=$("$BIN/gatehouse-bench" cycles --url "$URL" --admin-token "$GATEHOUSE_ADMIN_TOKEN" --seconds "$DURATION" --concurrency 8)
  echo "$out"
  n=$(sed -n 's/^cycles: \([0-9]*\) request+approve.*/\1/p' <<<"$out")
  awk -v s0="$server_before" -v s1="$(cpu_ms "$SERVER_PID")" -v r0="$receiver_before" -v r1="$(cpu_ms "$RECEIVER_PID")" -v n="${n:-0}" \
    'BEGIN { if (n > 0) printf "CPU per cycle: server %.2f ms, receiver %.2f ms\n", (s1 - s0) / n, (r1 - r0) / n }'
}

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(swift --version 2>/dev/null | head -1)"
echo "== request+approve cycles, 8 workers, no webhooks (baseline)"
start_server "$WORK/base.yaml" base
cycles
stop_server
echo "== request+approve cycles, 8 workers, every event sent to a local receiver through the outbox"
start_server "$WORK/webhooks.yaml" hooks
# PROFILE=FILE records a perf profile of the server during the webhook run (PROFILE_ARGS: more perf options).
if [ -n "${PROFILE:-}" ]; then
  perf record -F 999 -g ${PROFILE_ARGS:-} -o "$PROFILE" -p "$SERVER_PID" -- sleep $((DURATION - 2)) >/dev/null 2>&1 &
fi
cycles
stopped=$(date +%s.%N)
ADMIN_CURL=(curl -fs -H "Authorization: Bearer $GATEHOUSE_ADMIN_TOKEN")
for _ in $(seq 1 600); do
  queued=$("${ADMIN_CURL[@]}" "$URL/v1/webhooks/deliveries?limit=1000" | python3 -c 'import json,sys; print(sum(1 for d in json.load(sys.stdin)["deliveries"] if d["state"] != "delivered"))')
  [ "$queued" = 0 ] && break
  sleep 0.2
done
drained=$(date +%s.%N)
python3 - "$WORK/lags.txt" "$stopped" "$drained" <<'EOF'
import sys
rows = [line.split() for line in open(sys.argv[1])]
lags = sorted(float(row[1]) for row in rows)
ids = [row[0] for row in rows]
pick = lambda p: lags[min(len(lags) - 1, int(len(lags) * p))] * 1000
print("webhooks: %d messages (%d distinct ids); lag from audit event to receiver p50 %.0f ms, p99 %.0f ms; outbox empty %.1f s after the load stopped"
      % (len(lags), len(set(ids)), pick(0.5), pick(0.99), float(sys.argv[3]) - float(sys.argv[2])))
EOF
stop_server

echo "== GET /inbox (HTML) against GET /v1/requests?scope=to_approve (JSON), 50 waiting requests, wrk 1 thread, 8 connections, ${DURATION}s"
start_server "$WORK/base.yaml" inbox
for i in $(seq -f "%03g" 0 49); do
  T=$("${ADMIN_CURL[@]}" -X POST -H 'content-type: application/json' -d "{\"principal\":\"u$i\"}" "$URL/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -fs -o /dev/null -X POST -H "Authorization: Bearer $T" -H 'content-type: application/json' \
    -d "{\"resource\":\"db$((10#$i % 5))\",\"role\":\"write\",\"duration\":\"30m\",\"reason\":\"INC-$i rotate the <replica> keys & restart\"}" "$URL/v1/requests"
done
OPS=$("${ADMIN_CURL[@]}" -X POST -H 'content-type: application/json' -d '{"principal":"ops1"}' "$URL/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
CSRF=$(curl -fs -c "$WORK/jar" "$URL/sign-in" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p')
curl -fs -o /dev/null -b "$WORK/jar" -c "$WORK/jar" --data-urlencode "csrf=$CSRF" --data-urlencode "token=$OPS" "$URL/sign-in"
COOKIE=$(awk '$6 == "gatehouse_session" {print $7}' "$WORK/jar")
rows=$(curl -fs -H "Cookie: gatehouse_session=$COOKIE" "$URL/inbox" | grep -c '<a href="/requests/')
[ "$rows" -ge 50 ] || { echo "inbox shows $rows requests, expected 50"; exit 1; }
echo "-- GET /inbox ($(curl -fs -H "Cookie: gatehouse_session=$COOKIE" "$URL/inbox" | wc -c) bytes)"
wrk -t1 -c8 -d"${DURATION}s" --latency -H "Cookie: gatehouse_session=$COOKIE" "$URL/inbox" | grep -E "Requests/sec|50%|99%|Non-2xx"
echo "-- GET /v1/requests?scope=to_approve ($(curl -fs -H "Authorization: Bearer $OPS" "$URL/v1/requests?scope=to_approve" | wc -c) bytes)"
wrk -t1 -c8 -d"${DURATION}s" --latency -H "Authorization: Bearer $OPS" "$URL/v1/requests?scope=to_approve" | grep -E "Requests/sec|50%|99%|Non-2xx"
