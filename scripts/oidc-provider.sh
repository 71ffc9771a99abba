#!/usr/bin/env bash
# A throwaway OpenID Connect provider for tests: django-oauth-toolkit in a venv from PyPI.
#   scripts/oidc-provider.sh start DIR [PORT]   set up DIR (sqlite db, RSA key, log, pid), start on
#                                               127.0.0.1:PORT (a free one if omitted), wait until
#                                               discovery answers, print the issuer URL
#   scripts/oidc-provider.sh stop DIR           stop it (the folder is left for the caller to remove)
#   scripts/oidc-provider.sh restart DIR        stop and start again (the same port, keys and data)
#   scripts/oidc-provider.sh manage DIR ARGS... run manage.py against DIR, e.g. the fixtures:
#       fixture_user NAME --password P --email E [--groups g1,g2] [--email-verified yes|no]
#       fixture_client ID --secret S --redirect-uri URI [--redirect-uri URI2 ...]
#   scripts/oidc-provider.sh rotate-key DIR     sign with a new RSA key, keep the old one in the JWKS,
#                                               restart on the same port, print the issuer URL
#   scripts/oidc-provider.sh prepare            make the venv and the template database (test.sh runs it first)
#   scripts/oidc-provider.sh browse URL USER PASSWORD [--stop-at PREFIX]   a person's browser (tests)
#   scripts/oidc-provider.sh python             print the test venv's python (made when missing)
#   scripts/oidc-provider.sh selftest           the whole flow against a provider in a temp folder
#                                               (OIDC_SELFTEST_KEEP=1 keeps the folder and its log)
# The issuer is http://127.0.0.1:PORT/o (discovery: ISSUER/.well-known/openid-configuration).
# Login page: /accounts/login/ (fields username, password; button #login-submit).
# The venv lives in .build-oidc/venv and is rebuilt when scripts/oidc-provider/requirements.txt changes.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APP=$REPO/scripts/oidc-provider
BUILD=$REPO/.build-oidc
VENV=$BUILD/venv
PY=$VENV/bin/python
usage="usage: oidc-provider.sh start DIR [PORT] | stop DIR | restart DIR | manage DIR ARGS... | rotate-key DIR | browse URL USER PASSWORD [--stop-at PREFIX] | python | selftest"
cmd=${1:?$usage}
# Bytecode goes to .build-oidc, not into the source tree.
export PYTHONPYCACHEPREFIX=$BUILD/pycache PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1

ensure_venv() {
  mkdir -p "$BUILD"
  local want; want=$(sha256sum "$APP/requirements.txt" | cut -d' ' -f1)
  [ -x "$PY" ] && [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" = "$want" ] && return 0
  # One builder at a time; the others wait, then find the venv ready.
  exec 9>"$BUILD/venv.lock"
  flock 9
  if ! { [ -x "$PY" ] && [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" = "$want" ]; }; then
    rm -rf "$VENV"
    { python3 -m venv "$VENV" && "$PY" -m pip install -q -r "$APP/requirements.txt"; } >"$BUILD/venv.log" 2>&1 \
      || { cat "$BUILD/venv.log" >&2; rm -rf "$VENV"; exit 1; }
    echo "$want" > "$VENV/.requirements.sha256"
  fi
  exec 9>&-
}

manage() {
  OIDC_PROVIDER_DIR=$dir DJANGO_SETTINGS_MODULE=settings "$PY" "$APP/manage.py" "$@"
}

new_key() {  # a 2048-bit RSA private key (PKCS#8 PEM) into $1
  "$PY" -c '
import sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
sys.stdout.buffer.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))' > "$1.tmp"
  chmod 600 "$1.tmp"
  mv "$1.tmp" "$1"
}

migrate() {
  # A migrated empty database is kept in .build-oidc per requirements and migrations, so a new
  # DIR copies it instead of running the migrations (seconds on this machine).
  local stamp template
  stamp=$(cat "$APP/requirements.txt" "$APP"/idp/migrations/*.py | sha256sum | cut -c1-16)
  template=$BUILD/empty-$stamp.sqlite3
  [ -f "$dir/db.sqlite3" ] && [ "$(cat "$dir/db.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  if [ ! -f "$dir/db.sqlite3" ] && [ -f "$template" ]; then
    cp "$template" "$dir/db.sqlite3"
  else
    local fresh=no
    [ -f "$dir/db.sqlite3" ] || fresh=yes
    manage migrate --noinput -v0 >>"$dir/server.log" 2>&1 || { tail -30 "$dir/server.log" >&2; exit 1; }
    if [ $fresh = yes ]; then cp "$dir/db.sqlite3" "$template.$$" && mv "$template.$$" "$template"; fi
  fi
  echo "$stamp" > "$dir/db.stamp"
}

running() { [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; }

serve() {  # start the server on $dir/port, wait for discovery, print the issuer
  local port pid
  port=$(cat "$dir/port")
  # Detached (own session, stdin and stdout closed) so a caller reading this script's stdout
  # sees its end when the script exits.
  OIDC_PROVIDER_DIR=$dir DJANGO_SETTINGS_MODULE=settings \
    setsid "$PY" "$APP/manage.py" runserver --noreload --skip-checks "127.0.0.1:$port" \
    </dev/null >>"$dir/server.log" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/server.pid"
  "$PY" - "http://127.0.0.1:$port/o/.well-known/openid-configuration" "$pid" "$dir/server.log" <<'EOF'
import json, os, sys, time, urllib.request
url, pid, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status == 200:
                print(json.load(r)["issuer"])
                sys.exit(0)
    except Exception:
        pass
    gone = False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        gone = True
    if gone or time.monotonic() > deadline:
        if not gone:
            os.kill(pid, 9)  # not left running for a caller that was told it did not start
        sys.stderr.write(("OIDC provider exited" if gone else "OIDC provider not ready in 60 s") + "; its log:\n")
        sys.stderr.write("".join(open(log).readlines()[-30:]))
        sys.exit(1)
    time.sleep(0.1)
EOF
}

stop_server() {
  [ -f "$dir/server.pid" ] || return 0
  local pid; pid=$(cat "$dir/server.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/server.pid"
}

case "$cmd" in
  start)
    dir=${2:?$usage}
    mkdir -p "$dir/keys"
    dir=$(cd "$dir" && pwd)
    if running; then echo "an OIDC provider is already running for $dir" >&2; exit 1; fi
    port=${3:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    echo "$port" > "$dir/port"
    ensure_venv
    [ -s "$dir/secret_key" ] || { "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' > "$dir/secret_key"; chmod 600 "$dir/secret_key"; }
    [ -s "$dir/keys/signing.pem" ] || new_key "$dir/keys/signing.pem"
    migrate
    serve
    ;;
  stop)
    dir=${2:?$usage}
    [ -d "$dir" ] || exit 0
    stop_server
    ;;
  manage)
    dir=${2:?$usage}
    dir=$(cd "$dir" && pwd)
    shift 2
    ensure_venv
    manage "$@"
    ;;
  restart)
    dir=${2:?$usage}
    dir=$(cd "$dir" && pwd)
    ensure_venv
    stop_server
    serve
    ;;
  rotate-key)
    dir=${2:?$usage}
    dir=$(cd "$dir" && pwd)
    [ -s "$dir/keys/signing.pem" ] || { echo "no signing key in $dir; start it first" >&2; exit 1; }
    ensure_venv
    new_key "$dir/keys/next.pem"
    mv "$dir/keys/signing.pem" "$dir/keys/inactive-$(date -u +%Y%m%dT%H%M%S%N).pem"
    mv "$dir/keys/next.pem" "$dir/keys/signing.pem"
    stop_server
    serve
    ;;
  prepare)
    # The virtual environment and the migrated empty database, ready before tests start providers at once.
    ensure_venv
    tmp=$(mktemp -d)
    "$0" start "$tmp/p" >/dev/null
    "$0" stop "$tmp/p"
    rm -rf "$tmp"
    ;;
  python)
    # The venv's python, made first if needed (other test tools use the same venv: slack-blocks.sh).
    ensure_venv
    echo "$PY"
    ;;
  browse)
    # A person's browser at the provider (tests): browse START_URL USER PASSWORD [--stop-at PREFIX]
    shift
    ensure_venv
    exec "$PY" "$APP/browse.py" "$@"
    ;;
  selftest)
    ensure_venv
    exec "$PY" "$APP/selftest.py" "$REPO/scripts/oidc-provider.sh"
    ;;
  *) echo "unknown command $cmd; $usage" >&2; exit 2 ;;
esac
