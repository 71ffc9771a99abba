#!/usr/bin/env bash
# Headless-browser test of the web inbox: starts a throwaway `gatehouse serve` on SQLite with the
# example policy, issues tokens and files alice's requests with the real CLI, then runs
# scripts/browser-test.py (headless Chromium through chromedriver) against it.
# Usage: scripts/browser-test.sh [path/to/gatehouse]   (default .build/debug/gatehouse)
# Screenshots land in test-artifacts/browser/ (git-ignored).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-.build/debug/gatehouse}
[ -x "$BIN" ] || BIN=$ROOT/$BIN
[ -x "$BIN" ] || { echo "browser test: no gatehouse binary at ${1:-.build/debug/gatehouse}" >&2; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
for tool in python3 chromedriver; do command -v "$tool" >/dev/null || { echo "browser test: $tool is not installed" >&2; exit 1; }; done

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "browser test FAILED: $*" >&2; [ -f "$WORK/serve.log" ] && tail -20 "$WORK/serve.log" >&2; exit 1; }

ARTIFACTS=$ROOT/test-artifacts/browser
mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/*.png "$ARTIFACTS"/*.html

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADMIN=browser-test-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
cp "$ROOT/examples/policy.yaml" "$WORK/policy.yaml"

GATEHOUSE_ADMIN_TOKEN=$ADMIN "$BIN" serve --policy "$WORK/policy.yaml" --database "sqlite:$WORK/g.db" --port "$PORT" \
  >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
export GATEHOUSE_URL=http://127.0.0.1:$PORT
ready=""
for _ in $(seq 1 150); do
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=1)' "$GATEHOUSE_URL" 2>/dev/null; then
    ready=yes; break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited at start"
  sleep 0.1
done
[ -n "$ready" ] || fail "the server did not answer /healthz within 15s"

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
token() { GATEHOUSE_TOKEN=$ADMIN "$BIN" token create "$1" --output json | json_field token; }
request() { # request RESOURCE ROLE REASON -> id (as alice)
  local out
  out=$(GATEHOUSE_TOKEN=$ALICE_TOKEN "$BIN" request "$1" --role "$2" --for 30m --reason "$3" --output json) || fail "request $1/$2 refused: $out"
  printf '%s' "$out" | python3 -c 'import json, sys; d = json.load(sys.stdin); assert d["state"] == "pending", d; print(d["id"])' \
    || fail "request $1/$2 is not pending: $out"
}

export ALICE_TOKEN BOB_TOKEN
ALICE_TOKEN=$(token alice) || fail "token create alice"
BOB_TOKEN=$(token bob) || fail "token create bob"

# Three pending requests by alice, on three resources: an identical pending request (same principal,
# resource and role) would be returned instead of filed, and a denial starts a cooldown on its resource.
LONG_WORD=$(printf 'x%.0s' $(seq 1 600))
export REQ_APPROVE REQ_DENY REQ_ESCAPE
REQ_APPROVE=$(request prod-db write "INC-123 fix the stuck orders migration")
REQ_DENY=$(request prod-host operate "INC-200 restart the app service after the deploy")
REQ_ESCAPE=$(request billing-api operate "<script>document.title='pwned'</script><img src=x onerror=alert(1)> INC-7 long text $LONG_WORD")
echo "server $GATEHOUSE_URL; requests: approve $REQ_APPROVE, deny $REQ_DENY, escape $REQ_ESCAPE"

export ARTIFACTS
python3 "$ROOT/scripts/browser-test.py" || fail "see above"
