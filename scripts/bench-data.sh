#!/usr/bin/env bash
# Cost as the data grows (BENCHMARKS.md): an audit log of 10^4, 10^5 and 10^6 events on SQLite, and for
# each size the time and peak memory of
#   verify   GET /v1/audit/verify on a running server (time of the call; the server's peak resident
#            memory over its idle size, from /proc)
#   export   gatehouse export --database ... -o FILE   (wall time, peak resident memory of the process)
#   import   gatehouse import --database NEW -i FILE   (the same)
# The cost per 10^4 events should stay flat from one size to the next, and memory should not grow with it.
#   scripts/bench-data.sh            SIZES="10000 100000 1000000" by default; release build in .build-release
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh time
swift build -c release --scratch-path .build-release --product gatehouse
swift build -c release --scratch-path .build-release --product gatehouse-bench
BIN=$(swift build -c release --scratch-path .build-release --show-bin-path)
SIZES=${SIZES:-10000 100000 1000000}
WORK=$(mktemp -d)
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
export GATEHOUSE_ADMIN_TOKEN=bench-admin-token-0123456789
printf 'version: 1\nprincipals: {alice: {groups: [engineers]}}\nresources:\n  db0: {kind: postgres, roles: {read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}}}\n' > "$WORK/policy.yaml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$SERVER_PID/status"; }

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(swift --version 2>/dev/null | head -1)"
printf '%-9s | %-30s | %-34s | %-34s\n' events "verify: s (per 10^4), peak MB" "export: s (per 10^4), peak MB" "import: s (per 10^4), peak MB"
for n in $SIZES; do
  db=$WORK/audit-$n.db
  "$BIN/gatehouse-bench" audit-log --database "sqlite:$db" --events "$n" >/dev/null
  "$BIN/gatehouse" serve --policy "$WORK/policy.yaml" --database "sqlite:$db" --port "$port" --log-level error >"$WORK/serve.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  idle=$(kb VmRSS)
  start=$(date +%s.%N)
  curl -fs -H "Authorization: Bearer $GATEHOUSE_ADMIN_TOKEN" "http://127.0.0.1:$port/v1/audit/verify" | grep -q '"ok":true' \
    || { echo "verify did not pass on $n events" >&2; exit 1; }
  verify_s=$(python3 -c "import sys,time; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$start")
  peak=$(kb VmHWM)
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  /usr/bin/time -f "%e %M" -o "$WORK/export.time" "$BIN/gatehouse" export --database "sqlite:$db" -o "$WORK/export.jsonl" 2>/dev/null
  /usr/bin/time -f "%e %M" -o "$WORK/import.time" "$BIN/gatehouse" import --database "sqlite:$WORK/imported-$n.db" -i "$WORK/export.jsonl" >/dev/null
  read -r export_s export_kb < "$WORK/export.time"
  read -r import_s import_kb < "$WORK/import.time"
  python3 - "$n" "$verify_s" "$idle" "$peak" "$export_s" "$export_kb" "$import_s" "$import_kb" <<'EOF'
import sys
n, verify_s, idle, peak, export_s, export_kb, import_s, import_kb = sys.argv[1:]
n = int(n); per = lambda s: float(s) / n * 1e4
print(f"{n:<9} | {float(verify_s):6.2f} ({per(verify_s):.3f}), +{(int(peak) - int(idle)) / 1024:5.1f} over {int(idle) / 1024:.0f}".ljust(32)
      + f" | {float(export_s):6.2f} ({per(export_s):.3f}), {int(export_kb) / 1024:6.1f}".ljust(36)
      + f" | {float(import_s):6.2f} ({per(import_s):.3f}), {int(import_kb) / 1024:6.1f}")
EOF
  rm -f "$db"* "$WORK/export.jsonl" "$WORK/imported-$n.db"*
done
