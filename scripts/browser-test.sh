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

# The same inbox behind a real OpenID Connect provider (django-oauth-toolkit): alice signs in from the
# CLI (`gatehouse login`) and files a request; in Chromium, bob signs in on the provider's own login
# page and approves it.
OIDC_DIR=$WORK/provider
OIDC_ISSUER=$("$ROOT/scripts/oidc-provider.sh" start "$OIDC_DIR") || fail "the identity provider did not start"
# The provider first: cleanup removes its folder, and with it the pid file that stops it.
trap '"$ROOT/scripts/oidc-provider.sh" stop "$OIDC_DIR" 2>/dev/null || true; cleanup' EXIT
"$ROOT/scripts/oidc-provider.sh" manage "$OIDC_DIR" fixture_client gatehouse --secret browser-test-client-secret \
  --redirect-uri http://127.0.0.1/auth/callback --redirect-uri http://127.0.0.1/callback >/dev/null
"$ROOT/scripts/oidc-provider.sh" manage "$OIDC_DIR" fixture_user alice --password pw-alice --email alice@example.test --groups oncall >/dev/null
"$ROOT/scripts/oidc-provider.sh" manage "$OIDC_DIR" fixture_user bob --password pw-bob --email bob@example.test --groups db-admins >/dev/null
OIDC_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$WORK/oidc-policy.yaml" <<YAML
version: 1
principals:
  deploy-bot: {groups: [automation], kind: service}
admins: [security]
identity:
  oidc:
    issuer: $OIDC_ISSUER
    client_id: gatehouse
    client_secret_env: GATEHOUSE_OIDC_SECRET
    redirect_uri: http://127.0.0.1:$OIDC_PORT/auth/callback
    display_name: Test SSO
    groups:
      oncall: [engineers]
      db-admins: [dba]
      secops: [security]
resources:
  prod-db:
    kind: postgres
    roles:
      write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: write}
YAML
GATEHOUSE_OIDC_SECRET=browser-test-client-secret GATEHOUSE_ADMIN_TOKEN=$ADMIN "$BIN" serve --policy "$WORK/oidc-policy.yaml" \
  --database "sqlite:$WORK/oidc.db" --port "$OIDC_PORT" >"$WORK/serve-oidc.log" 2>&1 &
OIDC_SERVER_PID=$!
trap 'kill $OIDC_SERVER_PID 2>/dev/null || true; "$ROOT/scripts/oidc-provider.sh" stop "$OIDC_DIR" 2>/dev/null || true; cleanup' EXIT
export GATEHOUSE_URL=http://127.0.0.1:$OIDC_PORT
for _ in $(seq 1 150); do curl -fs "$GATEHOUSE_URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
export XDG_CONFIG_HOME=$WORK/alice-config
unset GATEHOUSE_TOKEN
"$BIN" login --no-browser >"$WORK/login.out" 2>"$WORK/login.err" &
LOGIN_PID=$!
for _ in $(seq 1 100); do grep -q '/authorize/' "$WORK/login.err" 2>/dev/null && break; sleep 0.1; done
AUTH_URL=$(grep -o 'http://127.0.0.1[^ ]*/authorize/[^ ]*' "$WORK/login.err") || fail "gatehouse login printed no address: $(cat "$WORK/login.err")"
"$ROOT/scripts/oidc-provider.sh" browse "$AUTH_URL" alice pw-alice >/dev/null || fail "alice could not sign in at the provider"
wait "$LOGIN_PID" || fail "gatehouse login failed: $(cat "$WORK/login.out" "$WORK/login.err")"
grep -q "signed in as alice" "$WORK/login.out" || fail "gatehouse login said: $(cat "$WORK/login.out")"
[ "$(stat -c %a "$XDG_CONFIG_HOME/gatehouse/session.json")" = 600 ] || fail "the CLI session file is not mode 0600"
out=$("$BIN" request prod-db --role write --for 30m --reason "INC-321 repair the stuck order rows" --output json) || fail "alice's request: $out"
export REQ_APPROVE
REQ_APPROVE=$(printf '%s' "$out" | python3 -c 'import json, sys; d = json.load(sys.stdin); assert d["state"] == "pending", d; print(d["id"])') \
  || fail "alice's request is not pending: $out"
"$BIN" logout >/dev/null || fail "gatehouse logout"
[ ! -f "$XDG_CONFIG_HOME/gatehouse/session.json" ] || fail "gatehouse logout left the session file"
echo "provider $OIDC_ISSUER; server $GATEHOUSE_URL; alice signed in from the CLI and filed $REQ_APPROVE"
SCENARIO=provider OIDC_ISSUER=$OIDC_ISSUER APPROVER=bob APPROVER_PASSWORD=pw-bob python3 "$ROOT/scripts/browser-test.py" \
  || { tail -20 "$WORK/serve-oidc.log" >&2; fail "see above"; }
