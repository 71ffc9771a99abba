#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and benchmarks, from Debian's `postgresql` package.
#   scripts/postgres-server.sh start DIR [PORT]   initdb into DIR (owned by the postgres user), start on
#                                                 127.0.0.1:PORT, print the URL of a `gatehouse` superuser
#   scripts/postgres-server.sh stop DIR           stop it (the folder is left for the caller to remove)
#   scripts/postgres-server.sh restart DIR        stop and start again (the same port and data)
#   scripts/postgres-server.sh reload DIR         re-read the configuration (and the TLS files below)
# With PG_SSL_CERT and PG_SSL_KEY (PEM files) set at start (or reload), the server accepts TLS with them.
# Password sign-in over TCP (SCRAM-SHA-256), as in production; nothing listens beyond loopback.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/initdb" ] || { echo "PostgreSQL server binaries not found; run scripts/install-deps.sh" >&2; exit 1; }
cmd=${1:?usage: postgres-server.sh start|stop|restart DIR [PORT]}
dir=${2:?usage: postgres-server.sh start|stop|restart DIR [PORT]}
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
install_tls_files() {
  install -m 600 "$PG_SSL_CERT" "$dir/data/server.crt"
  install -m 600 "${PG_SSL_KEY:?PG_SSL_KEY goes with PG_SSL_CERT}" "$dir/data/server.key"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir/data/server.crt" "$dir/data/server.key"; fi
}
case "$cmd" in
  start)
    port=${3:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    mkdir -p "$dir"
    password=gatehouse-test-password
    printf '%s\n' "$password" > "$dir/.pw"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$dir"; fi
    as_postgres "$BIN/initdb" -D "$dir/data" -U gatehouse --pwfile="$dir/.pw" --auth-local=scram-sha-256 \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    echo "$port" > "$dir/port"
    if [ -n "${PG_SSL_CERT:-}" ]; then
      install_tls_files
      printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" >> "$dir/data/postgresql.conf"
    fi
    ;&
  restart-start)
    port=$(cat "$dir/port")
    # fsync off by default: a throwaway server (PG_FSYNC=on for benchmarks); max_connections covers
    # several servers' pools in one test.
    as_postgres "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=${PG_FSYNC:-off} -c max_connections=300 -c shared_buffers=128MB" start >/dev/null \
      || { tail -20 "$dir/server.log" >&2; exit 1; }
    echo "postgres://gatehouse:gatehouse-test-password@127.0.0.1:$port/postgres"
    ;;
  stop)
    [ -d "$dir/data" ] && as_postgres "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  reload)
    if [ -n "${PG_SSL_CERT:-}" ]; then install_tls_files; fi
    as_postgres "$BIN/pg_ctl" -D "$dir/data" reload >/dev/null
    ;;
  restart)
    as_postgres "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    "$0" restart-start "$dir"
    ;;
  *) echo "unknown command $cmd; use start, stop, restart or reload" >&2; exit 2 ;;
esac
