#!/usr/bin/env bash
# The guard proxy's cost, as pgbench sees it: the same PostgreSQL server measured directly, through
# pgbouncer (session pooling) and through `gatehouse serve --proxy`, in one run, select-only, the
# default TPC-B-like mix, and select-only calling a function (the proxy's catalog lookup). Release build; the database, pgbench, pgbouncer and Gatehouse share the machine.
# DURATION (seconds per run, default 20), CLIENTS (default 8), SCALE (default 10); MODES (the workloads to run,
# default all: select-only tpcb-like select-only-prepared select-calling-a-function select-one-text);
# SERVER_BIN (another gatehouse binary to measure, e.g. to compare two builds in alternating runs); SYSCALLS=1
# (system calls per transaction of pgbouncer and Gatehouse, with strace); CPU=1 (their CPU time per transaction).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh pgbouncer postgresql-contrib
swift build -c release --scratch-path .build-release --product gatehouse
BIN=$(swift build -c release --scratch-path .build-release --show-bin-path)
SERVER_BIN=${SERVER_BIN:-$BIN/gatehouse}
MODES=${MODES:-select-only tpcb-like select-only-prepared select-calling-a-function select-one-text}
WORK=$(mktemp -d)
chmod 755 "$WORK"
DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-8}
SCALE=${SCALE:-10}
PGPORT=${PGPORT:-18432}; BOUNCER_PORT=${BOUNCER_PORT:-18433}; PROXY_PORT=${PROXY_PORT:-18434}; HTTP_PORT=${HTTP_PORT:-18435}
PGDIR="$WORK/pg"
trap 'kill ${SERVER_PID:-} ${BOUNCER_PID:-} 2>/dev/null; wait 2>/dev/null; scripts/postgres-server.sh stop "$PGDIR"; rm -rf "$WORK"' EXIT
PGURL=$(scripts/postgres-server.sh start "$PGDIR" "$PGPORT")
PGBENCH=$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
PASSWORD=gatehouse-test-password
PGPASSWORD=$PASSWORD psql -X -q "$PGURL" -c "CREATE DATABASE bench"
PGPASSWORD=$PASSWORD "$PGBENCH" -i -q -s "$SCALE" "host=127.0.0.1 port=$PGPORT user=gatehouse dbname=bench" 2>&1 | tail -1

# pgbouncer in session mode, in front of the same server (it runs as the postgres user).
BOUNCER="$WORK/pgbouncer"
mkdir -p "$BOUNCER"
cat > "$BOUNCER/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
auth_type = plain
auth_file = $BOUNCER/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = $BOUNCER/pgbouncer.log
pidfile = $BOUNCER/pgbouncer.pid
unix_socket_dir =
INI
echo "\"gatehouse\" \"$PASSWORD\"" > "$BOUNCER/userlist.txt"
chown -R postgres "$BOUNCER"
runuser -u postgres -- pgbouncer "$BOUNCER/pgbouncer.ini" >/dev/null 2>&1 &
BOUNCER_PID=$!
for _ in $(seq 1 50); do PGPASSWORD=$PASSWORD psql -X -q -c "SELECT 1" "host=127.0.0.1 port=$BOUNCER_PORT user=gatehouse dbname=bench" >/dev/null 2>&1 && break; sleep 0.1; done

# Gatehouse guarding the same database; the principal `bench` holds a write grant.
cat > "$WORK/policy.yaml" <<YAML
version: 1
principals:
  bench: {groups: [engineers]}
resources:
  bench-db:
    kind: postgres
    roles:
      write: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: write}
    proxy:
      listen: 127.0.0.1:$PROXY_PORT
      upstream: {host: 127.0.0.1, port: $PGPORT, database: bench, user: gatehouse, password_env: BENCH_DB_PASSWORD}
antispam: {enabled: false}
YAML
export GATEHOUSE_ADMIN_TOKEN=bench-admin-token-0123456789 BENCH_DB_PASSWORD=$PASSWORD
"$SERVER_BIN" serve --proxy --policy "$WORK/policy.yaml" --database "sqlite:$WORK/gatehouse.db" --port "$HTTP_PORT" --log-level warning &
SERVER_PID=$!
export GATEHOUSE_URL=http://127.0.0.1:$HTTP_PORT
for _ in $(seq 1 100); do curl -fs "$GATEHOUSE_URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN=$(GATEHOUSE_TOKEN=$GATEHOUSE_ADMIN_TOKEN "$BIN/gatehouse" token create bench)
GATEHOUSE_TOKEN=$TOKEN "$BIN/gatehouse" request bench-db --role write --for 8h --reason "pgbench run" >/dev/null

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(psql --version); $(pgbouncer --version | head -1)"
echo "== pgbench -c $CLIENTS -j 2 -T $DURATION, scale $SCALE, simple protocol"
cpu_ticks() { # PID: its user and system clock ticks so far (all threads)
  awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"
}
run() { # NAME PORT USER PASSWORD DATABASE ARGS...
  local name=$1 port=$2 user=$3 password=$4 db=$5; shift 5
  local out tps tracer=
  # PROFILE=FILE records a perf profile of Gatehouse during its first run (PROFILE_ARGS: more perf options, e.g. --all-user).
  if [ "$name" = gatehouse ] && [ -n "${PROFILE:-}" ] && [ ! -e "$PROFILE" ]; then
    perf record -F 999 -g ${PROFILE_ARGS:-} -o "$PROFILE" -p "$SERVER_PID" -- sleep $((DURATION - 2)) >/dev/null 2>&1 &
  fi
  # SYSCALLS=1 counts the system calls of pgbouncer and of Gatehouse per transaction (strace slows both:
  # the counts, not the tps, are the figure then).
  if [ -n "${SYSCALLS:-}" ] && [ "$name" != direct ]; then
    local pid=$SERVER_PID
    [ "$name" = pgbouncer ] && pid=$(pgrep -n -x pgbouncer)
    strace -f -c -o "$WORK/strace-$name" -p "$pid" >/dev/null 2>&1 &
    tracer=$!
    sleep 1
  fi
  # CPU=1: the CPU time (user and system) pgbouncer or Gatehouse spent per transaction, from /proc.
  local cpu_pid= cpu_before=
  if [ -n "${CPU:-}" ] && [ "$name" != direct ]; then
    cpu_pid=$SERVER_PID
    [ "$name" = pgbouncer ] && cpu_pid=$(pgrep -n -x pgbouncer)
    cpu_before=$(cpu_ticks "$cpu_pid")
  fi
  out=$(PGPASSWORD=$password "$PGBENCH" -n -c "$CLIENTS" -j 2 -T "$DURATION" "$@" "host=127.0.0.1 port=$port user=$user dbname=$db" 2>&1)
  tps=$(awk '/^tps/ {print int($3)}' <<<"$out")
  if [ -n "$cpu_pid" ]; then
    local after n; after=$(cpu_ticks "$cpu_pid")
    n=$(awk -F': ' '/number of transactions actually processed/ {print $2+0}' <<<"$out")
    awk -v b="$cpu_before" -v a="$after" -v n="${n:-0}" -v hz="$(getconf CLK_TCK)" -v who="$name" 'BEGIN {
      split(b, x); split(a, y); if (n > 0) printf "  %s CPU per transaction: %.1f µs user, %.1f µs system\n", who, (y[1]-x[1])/hz/n*1e6, (y[2]-x[2])/hz/n*1e6 }' >&2
  fi
  if [ -n "$tracer" ]; then
    kill -INT "$tracer" 2>/dev/null || true; wait "$tracer" 2>/dev/null || true
    local n; n=$(awk -F': ' '/number of transactions actually processed/ {print $2+0}' <<<"$out")
    if [ ! -s "$WORK/strace-$name" ] || [ "${n:-0}" -eq 0 ]; then
      echo "  $name: no system call counts (strace could not attach, or pgbench ran no transaction)" >&2
    else awk -v n="$n" -v who="$name" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { all += $4; if ($4 / n >= 0.01) printf "  %s %-16s %6.2f per transaction\n", who, $NF, $4 / n }
                                   END { printf "  %s %-16s %6.2f per transaction (%d transactions)\n", who, "all", all / n, n }' "$WORK/strace-$name" >&2
    fi
  fi
  echo "$name $tps"
}
# select-only again, with a function call in each statement: in a write session the proxy looks the
# function up in the database's catalog before the statement runs (abs() is a built-in; the lookup is
# made all the same, since another schema could hold an abs()).
printf '%s\n' '\set aid random(1, 100000 * :scale)' 'SELECT abalance FROM pgbench_accounts WHERE aid = abs(:aid);' > "$WORK/call.sql"
# select-only with one text sent over and over: what the guard's memory by exact text gives, against
# select-only's new value in every statement (remembered by shape).
printf '%s\n' 'SELECT abalance FROM pgbench_accounts WHERE aid = 4242;' > "$WORK/one-text.sql"
chmod 644 "$WORK/call.sql" "$WORK/one-text.sql"
for mode in "select-only:-S" "tpcb-like:" "select-only-prepared:-S -M prepared" "select-calling-a-function:-f $WORK/call.sql" "select-one-text:-f $WORK/one-text.sql"; do
  label=${mode%%:*}; args=${mode#*:}
  [[ " $MODES " == *" $label "* ]] || continue
  # shellcheck disable=SC2086
  direct=$(run direct "$PGPORT" gatehouse "$PASSWORD" bench $args | cut -d' ' -f2)
  # shellcheck disable=SC2086
  bouncer=$(run pgbouncer "$BOUNCER_PORT" gatehouse "$PASSWORD" bench $args | cut -d' ' -f2)
  # shellcheck disable=SC2086
  gate=$(run gatehouse "$PROXY_PORT" bench "$TOKEN" bench-db $args | cut -d' ' -f2)
  awk -v l="$label" -v d="$direct" -v b="$bouncer" -v g="$gate" 'BEGIN {
    printf "%-22s direct %6d tps | pgbouncer %6d tps (%.2f) | gatehouse %6d tps (%.2f of direct, %.2f of pgbouncer)\n", l, d, b, b/d, g, g/d, g/b }'
done
curl -fs "$GATEHOUSE_URL/metrics" | grep -E '^gatehouse_proxy_(statements|check_seconds_(sum|count))' || true
