#!/usr/bin/env bash
# Drives the README walkthrough with the real `gatehouse` binary against a real server on SQLite,
# checking every answer and exit code a user would see.
set -euo pipefail

BIN=${1:-.build/debug/gatehouse}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
# Ports the kernel hands out as free right now (a random pick can collide with a busy port).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
SERVER_PID=""; SERVER2_PID=""; SERVER3_PID=""
cleanup() { for pid in $SERVER_PID ${SERVER2_PID:-} ${SERVER3_PID:-} ${SERVER4_PID:-}; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

fail() { echo "walkthrough FAILED: $*" >&2; [ -f "$WORK/serve.log" ] && tail -20 "$WORK/serve.log" >&2; exit 1; }
expect_exit() { # expect_exit CODE COMMAND...
  local want=$1; shift
  set +e; "$@" >"$WORK/out" 2>"$WORK/err"; local got=$?; set -e
  [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want; stdout: $(cat "$WORK/out"); stderr: $(cat "$WORK/err")"
}
expect_output() { grep -q -- "$1" "$WORK/out" "$WORK/err" || fail "expected '$1' in the output of the last command: $(cat "$WORK/out" "$WORK/err")"; }

cd "$WORK"
cp "$ROOT/examples/policy.yaml" policy.yaml

# An invalid policy is refused at start, with file:line.
printf 'version: 1\nprincipals: {alice: {groups: [engineers]}}\nresources:\n  prod-db: {kind: postgres, roles: {write: {requesters: [enginers], approvals: 0, max_duration: 30x, allows: write}}}\n' > bad.yaml
expect_exit 1 "$BIN" policy check bad.yaml
expect_output "bad.yaml:4:"
expect_output "did you mean \`engineers\`"
expect_exit 1 env GATEHOUSE_ADMIN_TOKEN=walkthrough-admin-token-0123456789 "$BIN" serve --policy bad.yaml --database "sqlite:$WORK/refused.db" --port "$PORT"
expect_output "refusing to start"
expect_exit 0 "$BIN" policy check policy.yaml

export GATEHOUSE_ADMIN_TOKEN=walkthrough-admin-token-0123456789
"$BIN" serve --policy policy.yaml --database "sqlite:$WORK/gatehouse.db" --port "$PORT" >serve.log 2>&1 &
SERVER_PID=$!
export GATEHOUSE_URL=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -fs "$GATEHOUSE_URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$GATEHOUSE_URL/readyz" >/dev/null || fail "server did not become ready"

ADMIN=$GATEHOUSE_ADMIN_TOKEN
ALICE=$(GATEHOUSE_TOKEN=$ADMIN "$BIN" token create alice)
BOB=$(GATEHOUSE_TOKEN=$ADMIN "$BIN" token create bob)
CAROL=$(GATEHOUSE_TOKEN=$ADMIN "$BIN" token create carol)
[[ $ALICE == ghs_* ]] || fail "token create printed '$ALICE'"

# alice may not write yet: approval required (exit 3) with the command to run.
expect_exit 3 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --role write
expect_output "gatehouse request prod-db --role write"
# alice is not a dba: the admin role is denied outright (exit 4).
expect_exit 4 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --role admin

# Bad requests are refused with the field at fault; usage errors exit 2.
expect_exit 1 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-db --role write --for 2h --reason "INC-4411 fix stuck migration"
expect_output "maximum of 1h"
expect_exit 1 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-db --role write --for 30x --reason "INC-4411 fix stuck migration"
expect_output "field: duration"
expect_exit 2 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-db --role write
expect_exit 2 env GATEHOUSE_TOKEN="$ALICE" "$BIN" requests --output yaml
expect_exit 1 env GATEHOUSE_TOKEN=wrong-token "$BIN" requests
expect_output "unknown or revoked"
# With --output json, failures are JSON on stdout too.
expect_exit 1 env GATEHOUSE_TOKEN=wrong-token "$BIN" requests --output json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["code"]=="invalid_token", d' "$WORK/out" || fail "--output json error was not JSON"
expect_exit 2 env GATEHOUSE_TOKEN= "$BIN" requests --output=json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["code"]=="usage", d' "$WORK/out" || fail "--output=json usage error was not JSON"

# alice asks; she cannot approve her own request; bob sees it and approves.
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-db --role write --for 30m --reason "INC-4411 fix stuck migration" --output json
ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
grep -q '"state" : "pending"' "$WORK/out" || fail "request not pending: $(cat "$WORK/out")"
expect_exit 1 env GATEHOUSE_TOKEN="$ALICE" "$BIN" approve "$ID"
expect_output "cannot approve your own request"
expect_exit 0 env GATEHOUSE_TOKEN="$BOB" "$BIN" requests --to-approve
expect_output "$ID"
expect_exit 0 env GATEHOUSE_TOKEN="$BOB" "$BIN" approve "$ID" --comment "checked INC-4411"
expect_output "approved"

# alice now holds a grant; she checks, lists and releases it.
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --role write
expect_output "allow"
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" grants --active --output json
GRANT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["grants"][0]["id"])' "$WORK/out")
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" release "$GRANT"
expect_output "released"
expect_exit 3 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --role write

# One exact statement: classified, approval required, approved by bob, allowed once, then refused.
DELETE="DELETE FROM orders -- WHERE id = 1"
expect_exit 5 env GATEHOUSE_TOKEN="$ALICE" "$BIN" classify "$DELETE"
expect_output "delete_without_where"
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" classify "SELECT 'DROP TABLE users' AS drop"
expect_output "read"
expect_exit 6 env GATEHOUSE_TOKEN="$ALICE" "$BIN" classify "DROP DATABASE prod"
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" classify --kind shell "ls -la /var/log"
expect_exit 5 env GATEHOUSE_TOKEN="$ALICE" "$BIN" classify --kind shell "curl -fsSL https://get.example.com | sudo bash"
expect_output "pipe_to_shell"
expect_exit 3 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --sql "$DELETE"
expect_output "gatehouse request prod-db --sql"
expect_exit 4 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --sql "DROP DATABASE prod"
expect_output "forbidden"
expect_exit 1 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-db --sql "DROP DATABASE prod" --reason "INC-4411 start over"
expect_output "forbidden"
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-db --sql "$DELETE" --reason "INC-4411 purge test orders" --output json
AID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
expect_exit 0 env GATEHOUSE_TOKEN="$BOB" "$BIN" show "$AID"
expect_output "statement *DELETE FROM orders$"
expect_output "delete_without_where"
expect_exit 0 env GATEHOUSE_TOKEN="$BOB" "$BIN" approve "$AID"
expect_exit 3 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --sql "DELETE FROM orders -- WHERE id = 2"
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --sql "$DELETE"
expect_output "used up"
expect_exit 3 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --sql "$DELETE"

# Command-line mistakes are said as such: a limit out of range is a usage error; a negative duration reaches the
# server, which says what a duration is; an empty file is an empty text; a name that cannot be a principal's is said so.
expect_exit 2 env GATEHOUSE_TOKEN="$ALICE" "$BIN" requests --limit 0
expect_output "--limit is from 1 to 1000"
expect_exit 1 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-db --role read --for -1m --reason "INC-4411 look"
expect_output "is not a duration"
expect_exit 1 env GATEHOUSE_TOKEN="$ALICE" "$BIN" check prod-db --sql-file /dev/null
expect_output "the action text is empty"
expect_exit 1 env GATEHOUSE_TOKEN="$ADMIN" "$BIN" token create "Bad Name"
expect_output "not a principal name"
expect_exit 2 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-db --role write --sql "SELECT 1" --reason "INC-4411 x"
expect_output "not both"

# exec: runs only what the grant allows, with the command's own exit code; never runs the rest.
expect_exit 3 env GATEHOUSE_TOKEN="$ALICE" "$BIN" exec --resource prod-host -- sh -c 'exit 7'
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-host --role operate --for 30m --reason "restart the stuck worker" --output json
OID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
expect_exit 0 env GATEHOUSE_TOKEN="$BOB" "$BIN" approve "$OID"
expect_exit 7 env GATEHOUSE_TOKEN="$ALICE" "$BIN" exec --resource prod-host -- sh -c 'exit 7'
# (A dangerous command whose accidental run would be harmless here: there is no git repository.)
expect_exit 3 env GATEHOUSE_TOKEN="$ALICE" "$BIN" exec --resource prod-host -- git push --force origin main
expect_output "git_force_push"
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" exec --resource prod-host -- echo ran-through-gatehouse
expect_output "ran-through-gatehouse"
# The program is started itself, not through env: env's options and assignments are no way around the check.
expect_exit 1 env GATEHOUSE_TOKEN="$ALICE" "$BIN" exec --resource prod-host -- -S "touch $WORK/split-ran"
expect_output "could not start -S"
expect_exit 1 env GATEHOUSE_TOKEN="$ALICE" "$BIN" exec --resource prod-host -- GATEHOUSE_X=1 touch "$WORK/assignment-ran"
[ ! -e "$WORK/split-ran" ] && [ ! -e "$WORK/assignment-ran" ] || fail "exec ran a command through env's options"
# ... and started as a shell starts it: the word as typed is its name (argv[0]), a script without `#!` is
# read by /bin/sh, and a program ended by a signal exits 128 + the signal.
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" exec --resource prod-host -- sh -c 'tr "\0" " " < /proc/$$/cmdline'
expect_output "^sh -c "
printf 'echo "script ran with $# argument(s): $1"\n' > "$WORK/no-shebang"; chmod +x "$WORK/no-shebang"
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" exec --resource prod-host -- "$WORK/no-shebang" first
expect_output "script ran with 1 argument(s): first"
expect_exit 143 env GATEHOUSE_TOKEN="$ALICE" "$BIN" exec --resource prod-host -- sh -c 'kill -TERM $$'

# SIGHUP with a broken policy keeps the running one.
cp bad.yaml policy.yaml
kill -HUP "$SERVER_PID"; sleep 0.5
grep -q "policy reload refused" serve.log || fail "SIGHUP with an invalid policy was not refused in the log"
expect_exit 0 env GATEHOUSE_TOKEN="$ALICE" "$BIN" request prod-db --role read --for 1h --reason "look at slow queries"
expect_output "approved"

# request --wait returns as soon as someone decides; a denial exits 4.
GATEHOUSE_TOKEN="$BOB" "$BIN" request billing-api --role operate --for 15m --reason "CHG-77 reindex orders" --wait --output json >wait.out 2>wait.err &
WAITER=$!
for _ in $(seq 1 50); do
  WID=$(GATEHOUSE_TOKEN="$CAROL" "$BIN" requests --to-approve --output json | python3 -c 'import json,sys; r=json.load(sys.stdin)["requests"]; print(r[0]["id"] if r else "")')
  [ -n "$WID" ] && break; sleep 0.2
done
[ -n "$WID" ] || fail "the waiting request never showed up for carol"
expect_exit 0 env GATEHOUSE_TOKEN="$CAROL" "$BIN" deny "$WID" --reason "use the read replica"
set +e; wait $WAITER; WAIT_EXIT=$?; set -e
[ "$WAIT_EXIT" = 4 ] || fail "request --wait exited $WAIT_EXIT after a denial, expected 4: $(cat wait.out wait.err)"
grep -q '"state" : "denied"' wait.out || fail "request --wait did not print the denied request"

# Denied, alice must wait before asking for billing-api again (429, exit 1), and is told why.
expect_exit 1 env GATEHOUSE_TOKEN="$BOB" "$BIN" request billing-api --role operate --for 15m --reason "CHG-77 reindex orders, really"
expect_output "denied in a row"
expect_output "429"

# Break-glass: carol (dba) takes prod-db/admin at once; a second use the same day is refused (429);
# the use is listed until someone else (bob) reviews it; carol cannot review her own.
expect_exit 0 env GATEHOUSE_TOKEN="$CAROL" "$BIN" break-glass prod-db --role admin --reason "INC-9 primary down, killing runaway queries"
expect_output "break-glass grant grt_"
BG=$(grep -o 'grt_[a-z0-9]*' "$WORK/out" | head -1)
expect_exit 0 env GATEHOUSE_TOKEN="$CAROL" "$BIN" check prod-db --role admin
expect_exit 1 env GATEHOUSE_TOKEN="$CAROL" "$BIN" break-glass prod-db --role admin --reason "INC-9 primary down again, once more"
expect_output "429"
expect_exit 0 env GATEHOUSE_TOKEN="$BOB" "$BIN" break-glass list --awaiting-review
expect_output "$BG"
expect_exit 1 env GATEHOUSE_TOKEN="$CAROL" "$BIN" break-glass review "$BG" --comment "fine"
expect_output "someone else must review it"
expect_exit 0 env GATEHOUSE_TOKEN="$BOB" "$BIN" break-glass review "$BG" --comment "killed 3 runaway queries; justified"
expect_exit 0 env GATEHOUSE_TOKEN="$BOB" "$BIN" break-glass list --awaiting-review --output json
grep -q "$BG" "$WORK/out" && fail "a reviewed break-glass use is still listed as awaiting review"

# The audit log has every step and verifies.
expect_exit 0 env GATEHOUSE_TOKEN="$ADMIN" "$BIN" audit --principal alice --limit 1000
expect_output "request.approved"
expect_output "grant.released"
expect_exit 0 env GATEHOUSE_TOKEN="$ADMIN" "$BIN" audit --limit 1000
expect_output "break_glass.used"
expect_output "break_glass.reviewed"
expect_exit 0 env GATEHOUSE_TOKEN="$ADMIN" "$BIN" audit verify
expect_output "audit chain verified"
# The head it prints is an anchor for later; an event the log does not hold (as after a cut) fails it.
HEAD=$(grep -o 'head [0-9]*:[0-9a-f]*' "$WORK/out" | cut -d' ' -f2)
[ -n "$HEAD" ] || fail "audit verify printed no head"
FIRST=$(env GATEHOUSE_TOKEN="$ADMIN" "$BIN" audit --limit 1 --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"][0]["hash"][:16])')
expect_exit 0 env GATEHOUSE_TOKEN="$ADMIN" "$BIN" audit verify --anchor "$HEAD" --anchor "msg_1_$FIRST"
expect_output "anchor(s) found"
expect_exit 1 env GATEHOUSE_TOKEN="$ADMIN" "$BIN" audit verify --anchor "999999:$(printf '%s' "$HEAD" | cut -d: -f2)"
expect_output "AUDIT CHAIN BROKEN"
expect_exit 2 env GATEHOUSE_TOKEN="$ADMIN" "$BIN" audit verify --anchor "not-an-anchor"

# Tokens: list never shows secrets; a revoked token stops working.
expect_exit 0 env GATEHOUSE_TOKEN="$ADMIN" "$BIN" token list --output json
grep -q "$ALICE" "$WORK/out" && fail "token list printed a secret"
TOKEN_ID=$(python3 -c 'import json,sys; print([t["id"] for t in json.load(open(sys.argv[1]))["tokens"] if t["principal"]=="alice"][0])' "$WORK/out")
expect_exit 0 env GATEHOUSE_TOKEN="$ADMIN" "$BIN" token revoke "$TOKEN_ID"
expect_exit 1 env GATEHOUSE_TOKEN="$ALICE" "$BIN" requests
expect_output "401"

# Two server processes on one SQLite file (shared mode) share one rate limit.
cat > shared.yaml <<'YAML'
version: 1
principals: {alice: {groups: [engineers]}, erin: {groups: [security]}}
admins: [security]
resources:
  prod-db: {kind: postgres, roles: {read: {requesters: [engineers], approvals: 0, max_duration: 1h, allows: read}}}
antispam:
  limits: {per_principal: {rate: 10/h, burst: 3}, per_source_ip: off}
  score: {thresholds: {throttle: 100, extra_approval: 100, quarantine: 100, block: 100}}
YAML
PORT2=$(free_port); PORT3=$(free_port); while [ "$PORT3" = "$PORT2" ] || [ "$PORT3" = "$PORT" ]; do PORT3=$(free_port); done
"$BIN" serve --policy shared.yaml --database "sqlite:$WORK/shared.db?mode=shared" --port "$PORT2" >serve2.log 2>&1 &
SERVER2_PID=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT2/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN" serve --policy shared.yaml --database "sqlite:$WORK/shared.db?mode=shared" --port "$PORT3" >serve3.log 2>&1 &
SERVER3_PID=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT3/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$PORT3/readyz" >/dev/null || fail "the second shared server did not become ready: $(cat serve3.log)"
# A process that wants the file to itself is refused while they run.
expect_exit 1 "$BIN" serve --policy shared.yaml --database "sqlite:$WORK/shared.db" --port "$(free_port)"
expect_output "is locked"
SHARED_ALICE=$(GATEHOUSE_URL=http://127.0.0.1:$PORT2 GATEHOUSE_TOKEN=$ADMIN "$BIN" token create alice)
ACCEPTED=0
for i in $(seq 1 10); do
  if [ $((i % 2)) = 0 ]; then URL=http://127.0.0.1:$PORT2; else URL=http://127.0.0.1:$PORT3; fi
  if GATEHOUSE_URL=$URL GATEHOUSE_TOKEN=$SHARED_ALICE "$BIN" request prod-db --role read --for "$((10 + i))m" --reason "INC-$i look at table $i" >/dev/null 2>&1; then
    ACCEPTED=$((ACCEPTED + 1))
  fi
done
[ "$ACCEPTED" = 3 ] || fail "two processes on one file accepted $ACCEPTED requests; the shared burst is 3"
expect_exit 0 env GATEHOUSE_URL="http://127.0.0.1:$PORT3" GATEHOUSE_TOKEN="$ADMIN" "$BIN" audit verify
kill "$SERVER2_PID" "$SERVER3_PID" 2>/dev/null || true
wait "$SERVER2_PID" "$SERVER3_PID" 2>/dev/null || true

# Moving that store to PostgreSQL: export, prepare the target, import, serve it, verify the chain.
: "${GATEHOUSE_TEST_POSTGRES:?the walkthrough needs a PostgreSQL server; run it from scripts/test.sh}"
expect_exit 0 "$BIN" export --database "sqlite:$WORK/shared.db" --output "$WORK/export.jsonl"
expect_output "exported"
psql -q "$GATEHOUSE_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS walkthrough" -c "CREATE DATABASE walkthrough" || fail "cannot create the walkthrough database"
PGURL="${GATEHOUSE_TEST_POSTGRES%/*}/walkthrough"
expect_exit 0 "$BIN" migrate --database "$PGURL"
expect_output "schema at version"
expect_exit 0 "$BIN" import --database "$PGURL" --input "$WORK/export.jsonl"
expect_output "the audit chain verifies"
expect_exit 1 "$BIN" import --database "$PGURL" --input "$WORK/export.jsonl"
expect_output "already holds data"
"$BIN" serve --policy shared.yaml --database "$PGURL" --port "$PORT2" >serve4.log 2>&1 &
SERVER4_PID=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT2/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
expect_exit 0 env GATEHOUSE_URL="http://127.0.0.1:$PORT2" GATEHOUSE_TOKEN="$ADMIN" "$BIN" audit verify
expect_exit 0 env GATEHOUSE_URL="http://127.0.0.1:$PORT2" GATEHOUSE_TOKEN="$SHARED_ALICE" "$BIN" requests
kill "$SERVER4_PID" 2>/dev/null || true
psql -q "$GATEHOUSE_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS walkthrough WITH (FORCE)" >/dev/null 2>&1 || true

echo "walkthrough passed"
