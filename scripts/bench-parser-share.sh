#!/usr/bin/env bash
# The parser threads' share between principals: POST /v1/check with a short SQL statement for alice (a new
# shape each time, so each is parsed), wrk 2 connections for 6 s, first alone and then while mallory sends
# 10 KB statements (300 OR-ed conditions on new column names, each parsed afresh) over 8 connections.
# Prints alice's p50 / p99 / requests per second in both phases, and mallory's.
#   scripts/bench-parser-share.sh                      release build in .build-release
#   SERVER_BIN=/path/to/gatehouse scripts/bench-parser-share.sh   another build of the server
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh wrk
swift build -c release --scratch-path .build-release --product gatehouse
BIN=$(swift build -c release --scratch-path .build-release --show-bin-path)
SB=${SERVER_BIN:-$BIN/gatehouse}
PORT=${PORT:-18501}
W=$(mktemp -d)
printf 'version: 1\nprincipals: {alice: {groups: [engineers]}, mallory: {groups: [engineers]}}\nresources:\n  db0: {kind: postgres, roles: {read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}}}\n' > $W/p.yaml
export GATEHOUSE_ADMIN_TOKEN=bench-admin-token-0123456789
"$SB" serve --policy $W/p.yaml --database sqlite:$W/f.db --port $PORT --log-level error & P=$!
trap 'kill $P; wait 2>/dev/null; rm -rf $W' EXIT
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:$PORT/readyz >/dev/null 2>&1 && break; sleep 0.1; done
export GATEHOUSE_URL=http://127.0.0.1:$PORT
A=$(GATEHOUSE_TOKEN=$GATEHOUSE_ADMIN_TOKEN "$BIN/gatehouse" token create alice)
M=$(GATEHOUSE_TOKEN=$GATEHOUSE_ADMIN_TOKEN "$BIN/gatehouse" token create mallory)
GATEHOUSE_TOKEN=$A "$BIN/gatehouse" request db0 --role read --for 1h --reason "INC-1 read" >/dev/null
GATEHOUSE_TOKEN=$M "$BIN/gatehouse" request db0 --role read --for 1h --reason "INC-2 read" >/dev/null
cat > $W/honest.lua <<LUA
math.randomseed(os.time())
request = function()
  local body = '{"resource":"db0","action":{"kind":"sql","text":"SELECT a, b FROM t' .. math.random(1, 1000000000) .. ' WHERE id = 1"}}'
  return wrk.format("POST", "/v1/check", {["Authorization"] = "Bearer $A", ["Content-Type"] = "application/json"}, body)
end
LUA
cat > $W/heavy.lua <<LUA
math.randomseed(os.time() + 7)
request = function()
  local parts = {}
  for i = 1, 300 do parts[i] = "c" .. math.random(1, 1000000000) .. " = " .. i end
  local body = '{"resource":"db0","action":{"kind":"sql","text":"SELECT * FROM big WHERE ' .. table.concat(parts, " OR ") .. '"}}'
  return wrk.format("POST", "/v1/check", {["Authorization"] = "Bearer $M", ["Content-Type"] = "application/json"}, body)
end
LUA
curl -fs -X POST -H "Authorization: Bearer $A" -H 'content-type: application/json' \
  -d '{"resource":"db0","action":{"kind":"sql","text":"SELECT a FROM t1 WHERE id = 1"}}' "$GATEHOUSE_URL/v1/check" | grep -q '"decision":"allow"' \
  || { echo "alice's check is not allowed" >&2; exit 1; }
alone=$(wrk -t1 -c2 -d6s --latency -s $W/honest.lua $GATEHOUSE_URL | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {r=$2} END {print p50, p99, r}')
wrk -t1 -c8 -d10s --latency -s $W/heavy.lua $GATEHOUSE_URL > $W/heavy.out & H=$!
sleep 2
during=$(wrk -t1 -c2 -d6s --latency -s $W/honest.lua $GATEHOUSE_URL | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {r=$2} END {print p50, p99, r}')
wait $H || true
heavy=$(awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {r=$2} /Non-2xx/ {b=$0} END {print p50, p99, r, b}' $W/heavy.out)
echo "== machine: $(nproc) cores"
echo "alice alone, p50 / p99 / per s:              $alone"
echo "alice while mallory sends 10 KB statements:  $during"
echo "mallory, p50 / p99 / per s:                  $heavy"
