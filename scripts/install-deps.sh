#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use, when they are missing.
# Usage: scripts/install-deps.sh [extra packages...]
set -euo pipefail
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The test identity provider (django-oauth-toolkit from PyPI) lives in a virtual environment.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
# PostgreSQL's parser as a library: the SQL classifier links it.
dpkg -s libpg-query-dev >/dev/null 2>&1 || need+=(libpg-query-dev)
# A throwaway PostgreSQL server for the store tests on PostgreSQL (scripts/postgres-server.sh).
dpkg -s postgresql >/dev/null 2>&1 || need+=(postgresql)
# The guard proxy's tests drive real clients through it: psql, psycopg and asyncpg (extended protocol), and
# make TLS certificates with openssl.
dpkg -s postgresql-client >/dev/null 2>&1 || need+=(postgresql-client)
dpkg -s python3-psycopg >/dev/null 2>&1 || need+=(python3-psycopg)
# asyncpg: prepare() sends Parse/Describe/Flush and then a simple Query without a Sync between.
dpkg -s python3-asyncpg >/dev/null 2>&1 || need+=(python3-asyncpg)
# pgjdbc (with a Java runtime) and node-postgres (with Node.js) for the driver matrix.
dpkg -s libpostgresql-jdbc-java >/dev/null 2>&1 || need+=(libpostgresql-jdbc-java)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The systemd unit in deploy/ is checked with systemd-analyze verify and security.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The web inbox's browser tests drive headless Chromium through chromedriver (WebDriver).
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s chromium-driver >/dev/null 2>&1 || need+=(chromium-driver)
# The benchmark smoke run in the test command (scripts/bench-smoke.sh) loads the HTTP API with wrk.
command -v wrk >/dev/null 2>&1 || need+=(wrk)
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  updated=1
fi
# node-postgres: Debian's node-pg unpacked into .build-deps/node-pg (NODE_PATH), so it works with any
# Node.js on the machine (installing the package needs Debian's own nodejs).
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODEPG=$REPO/.build-deps/node-pg
if [ ! -f "$NODEPG/usr/share/nodejs/pg/package.json" ]; then
  tmp=$(mktemp -d)
  pkgs=(node-pg node-split2 node-xtend node-readable-stream node-async)
  if ! (cd "$tmp" && apt-get download "${pkgs[@]}" >/dev/null 2>&1); then
    [ -n "${updated:-}" ] || $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download "${pkgs[@]}" >/dev/null)
  fi
  mkdir -p "$NODEPG"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$NODEPG"; done
  rm -rf "$tmp"
fi
