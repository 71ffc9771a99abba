#!/usr/bin/env bash
# The API contract test: schemathesis (from PyPI, pinned in scripts/contract/requirements.txt) drives a
# live `gatehouse serve` on a fresh SQLite file from openapi.yaml, with every check on (no server
# error, status codes, content types, response schemas and headers, schema-valid data accepted,
# schema-violating data refused, ...), first as a requester, then as the bootstrap admin. Any failure
# fails the run; the report is kept in test-artifacts/contract/. Every event of the run is also sent as a
# webhook to scripts/contract/webhook-receiver.py, which checks each message with the Standard Webhooks
# library and against the `webhooks` entry of openapi.yaml.
#   scripts/contract-test.sh [BIN]   (default .build/debug/gatehouse)
#   CONTRACT_EXAMPLES=N              test cases per operation and phase (default 40)
#   CONTRACT_SEED=N                  another seed than the fixed one (a wider search)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$REPO/.build/debug/gatehouse}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
BUILD=$REPO/.build-contract
VENV=$BUILD/venv
REPORTS=$REPO/test-artifacts/contract
export PYTHONPYCACHEPREFIX=$BUILD/pycache PIP_DISABLE_PIP_VERSION_CHECK=1

want=$(sha256sum "$REPO/scripts/contract/requirements.txt" | cut -d' ' -f1)
if ! { [ -x "$VENV/bin/st" ] && [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" = "$want" ]; }; then
  mkdir -p "$BUILD"; rm -rf "$VENV"
  { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r "$REPO/scripts/contract/requirements.txt"; } >"$BUILD/venv.log" 2>&1 \
    || { cat "$BUILD/venv.log" >&2; rm -rf "$VENV"; exit 1; }
  echo "$want" > "$VENV/.requirements.sha256"
fi

WORK=$(mktemp -d)
SERVER_PID=""
RECEIVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; [ -n "$RECEIVER_PID" ] && kill "$RECEIVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADMIN=contract-admin-token-0123456789abcdef
export GATEHOUSE_WEBHOOK_SECRET="whsec_$(head -c 32 /dev/urandom | base64)"
HOOKS=$WORK/webhooks.jsonl
"$VENV/bin/python" "$REPO/scripts/contract/webhook-receiver.py" "$REPO/openapi.yaml" "$WORK/receiver.port" "$HOOKS" 2>"$WORK/receiver.log" &
RECEIVER_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/receiver.port" ] && break; sleep 0.1; done
[ -s "$WORK/receiver.port" ] || { cat "$WORK/receiver.log" >&2; echo "contract test: the webhook receiver did not start" >&2; exit 1; }
# The example policy with one endpoint subscribed to every event.
awk -v url="http://127.0.0.1:$(cat "$WORK/receiver.port")/hook" '
  { print }
  /^  digest_interval:/ { print "  webhooks:"; print "    contract:"; print "      url: " url;
                          print "      secret_env: GATEHOUSE_WEBHOOK_SECRET"; print "      events: [all]" }' \
  "$REPO/examples/policy.yaml" > "$WORK/policy.yaml"
grep -q "secret_env: GATEHOUSE_WEBHOOK_SECRET\$" "$WORK/policy.yaml" || { echo "contract test: could not add the webhook endpoint to the policy" >&2; exit 1; }
GATEHOUSE_ADMIN_TOKEN=$ADMIN "$BIN" serve --policy "$WORK/policy.yaml" --database "sqlite:$WORK/gatehouse.db" --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
export GATEHOUSE_URL=http://127.0.0.1:$PORT
for _ in $(seq 1 150); do curl -fs "$GATEHOUSE_URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$GATEHOUSE_URL/readyz" >/dev/null || { tail -20 "$WORK/serve.log" >&2; echo "contract test: the server did not become ready" >&2; exit 1; }
ALICE=$(GATEHOUSE_TOKEN=$ADMIN "$BIN" token create alice 2>/dev/null)
BOB=$(GATEHOUSE_TOKEN=$ADMIN "$BIN" token create bob 2>/dev/null)
CAROL=$(GATEHOUSE_TOKEN=$ADMIN "$BIN" token create carol 2>/dev/null)

# Real ids for schemathesis to try beside the ones it makes up (half of the cases), so the operations on
# one request, grant, token or break-glass use reach their handlers' real paths, not only 404: a pending
# request, an approved one with its grant, an active grant of alice's own, someone else's pending request,
# a break-glass use, and every token.
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
as_user() { local token=$1; shift; GATEHOUSE_TOKEN=$token "$BIN" "$@" --output json; }
PENDING=$(as_user "$ALICE" request prod-db --role write --for 30m --reason "INC-4411 fix the stuck migration" | field id)
APPROVED=$(as_user "$ALICE" request prod-host --role operate --for 30m --reason "INC-4412 restart the worker" | field id)
GRANT=$(as_user "$CAROL" approve "$APPROVED" --comment "ok" | field grant_id)
OWN_GRANT=$(as_user "$ALICE" request prod-db --role read --for 1h --reason "INC-4413 read the orders table" | field grant_id)
OTHERS=$(as_user "$BOB" request prod-db --role write --for 30m --reason "CHG-77 add the missing index" | field id)
GLASS=$(as_user "$CAROL" break-glass use prod-db --role admin --reason "INC-4414 the primary is down" | field grant_id)
TOKENS=$(as_user "$ADMIN" token list | python3 -c 'import json,sys; print(" ".join(t["id"] for t in json.load(sys.stdin)["tokens"]))')
DECIDED=$(as_user "$ALICE" request prod-db --role read --for 1h --reason "INC-4415 read the audit table" | field id)
CONFIG=$WORK/schemathesis.toml
{
  cat "$REPO/scripts/contract/schemathesis.toml"
  echo
  echo "[dictionaries.ids]"
  printf 'values = [%s]\n' "$(for id in $PENDING $APPROVED $GRANT $OWN_GRANT $OTHERS $GLASS $TOKENS; do printf '"%s", ' "$id"; done)"
  echo "[dictionaries.names]"
  echo 'values = ["alice", "bob", "carol", "erin", "deploy-bot"]'
  echo "[dictionaries.resources]"
  echo 'values = ["prod-db", "prod-host", "billing-api"]'
  echo "[dictionaries.roles]"
  echo 'values = ["read", "write", "admin", "operate"]'
  echo "[parameters]"
  echo '"body.resource" = { dictionary = "resources", probability = 0.5 }'
  echo '"body.role" = { dictionary = "roles", probability = 0.5 }'
  echo '"path.id" = { dictionary = "ids", probability = 0.5 }'
  echo '"path.name" = { dictionary = "names", probability = 0.5 }'
  # A long poll on a pending request holds its answer up to `wait` (60 s): past the client's timeout, so the
  # reading of one request is given decided ones only (LongPollTests cover the wait itself).
  echo "[dictionaries.decided]"
  printf 'values = ["%s", "%s"]\n' "$APPROVED" "$DECIDED"
  echo "[[operations]]"
  echo 'include-operation-id = "getRequest"'
  echo 'parameters = { "path.id" = { dictionary = "decided", probability = 0.5 } }'
} > "$CONFIG"

rm -rf "$REPORTS"; mkdir -p "$REPORTS"
cd "$WORK"  # schemathesis keeps a cache folder where it runs
run() {  # run NAME TOKEN
  local status=0
  # A fixed seed: the same cases every run, so a failure is a change in the server or the spec.
  "$VENV/bin/st" --config-file "$CONFIG" run "$REPO/openapi.yaml" --url "$GATEHOUSE_URL" -H "Authorization: Bearer $2" \
    --checks all --max-examples "${CONTRACT_EXAMPLES:-40}" --seed "${CONTRACT_SEED:-20261202}" --generation-database none \
    --no-color --report junit --report-junit-path "$REPORTS/$1.xml" >"$REPORTS/$1.txt" 2>&1 || status=$?
  if [ "$status" != 0 ]; then
    sed -n '/FAILURES/,/WARNINGS/p' "$REPORTS/$1.txt" | head -150 >&2
    grep -A8 '^Failures:' "$REPORTS/$1.txt" >&2 || tail -30 "$REPORTS/$1.txt" >&2
    echo "contract test FAILED as $1 (exit $status); the whole report: $REPORTS/$1.txt" >&2
    exit 1
  fi
  grep -E "test cases|Test cases" -A1 "$REPORTS/$1.txt" | head -2
  echo "contract test passed as $1"
}
# The requester first: the admin's run revokes the tokens it finds in GET /v1/tokens (alice's too) and
# ends the sessions of the principals it is given.
run requester "$ALICE"
run admin "$ADMIN"
# The run never made the server fail or lose its audit chain.
kill -0 "$SERVER_PID" || { tail -20 "$WORK/serve.log" >&2; echo "contract test: the server died" >&2; exit 1; }
verify=$(curl -s -H "Authorization: Bearer $ADMIN" "$GATEHOUSE_URL/v1/audit/verify")
grep -q '"ok":true' <<<"$verify" || { cp "$WORK"/gatehouse.db* "$WORK/serve.log" "$REPORTS/"; echo "contract test: the audit chain does not verify after the run: $verify (database kept in $REPORTS)" >&2; exit 1; }
! grep -q '" 500\|status=500\|internal_error' "$WORK/serve.log" || { grep -m5 'status=500\|internal_error' "$WORK/serve.log" >&2; echo "contract test: the server logged a 500" >&2; exit 1; }
# Every message of the run reached the receiver (the outbox drains) and passed its checks.
for _ in $(seq 1 60); do
  waiting=$(curl -s -H "Authorization: Bearer $ADMIN" "$GATEHOUSE_URL/v1/webhooks/deliveries?limit=1000" \
            | python3 -c 'import json,sys; print(sum(1 for d in json.load(sys.stdin)["deliveries"] if d["state"] != "delivered"))')
  [ "$waiting" = 0 ] && break; sleep 1
done
[ "$waiting" = 0 ] || { echo "contract test: $waiting webhook message(s) still not delivered after 60 s" >&2; exit 1; }
cp "$HOOKS" "$REPORTS/webhooks.jsonl"
python3 - "$HOOKS" <<'PY' || exit 1
import collections, json, sys
messages = [json.loads(line) for line in open(sys.argv[1])]
bad = [m for m in messages if m["problems"]]
types = collections.Counter(m["type"] for m in messages)
for m in bad[:10]:
    print(f"webhook {m['id']} ({m['type']}): " + "; ".join(m["problems"]), file=sys.stderr)
# The set-up alone announces a request, approves one, starts grants and uses break-glass.
missing = {"request.created", "request.approved", "grant.started", "break_glass.used"} - set(types)
if bad or missing:
    print(f"contract test: {len(bad)} of {len(messages)} webhook messages failed their checks; events never sent: {sorted(missing) or 'none'}", file=sys.stderr)
    sys.exit(1)
print(f"contract test: {len(messages)} webhook messages verified (standardwebhooks) and valid against openapi.yaml: {dict(sorted(types.items()))}")
PY
echo "contract test passed"
