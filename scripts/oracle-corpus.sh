#!/usr/bin/env bash
# The database as the judge on a larger, generated set: every combination of a write (DELETE,
# UPDATE, and the same wrapped in a CTE, a DO block, EXPLAIN ANALYZE, a SQL function called at once)
# with a fixture table and a WHERE clause from a list of selective and non-selective predicates, and
# the schema changes the outage-risk rules cover. Each runs on a throwaway PostgreSQL server in a
# transaction that is rolled back (OracleTests); the run fails when the classifier says less than
# what the statement did. The test command runs only the corpus; this takes a few minutes.
#   scripts/oracle-corpus.sh            generate, start PostgreSQL, run, print the summary
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
PGDIR=$(mktemp -d /tmp/gatehouse-oracle-pg.XXXXXX)
trap 'scripts/postgres-server.sh stop "$PGDIR"; rm -rf "$PGDIR"' EXIT
export GATEHOUSE_TEST_POSTGRES=$(scripts/postgres-server.sh start "$PGDIR")
export GATEHOUSE_ORACLE_EXTRA="$PGDIR/generated.sql"
python3 - "$GATEHOUSE_ORACLE_EXTRA" <<'PY'
import itertools, sys
tables = ["users", "orders", "t", "app.t", "accounts"]
predicates = [
    "true", "1 = 1", "NOT false", "id = id", "id >= id", "a = a OR a IS NULL", "a IS NULL OR a IS NOT NULL",
    "EXISTS (SELECT 1)", "EXISTS (SELECT 1 FROM jobs)", "(SELECT count(*) FROM jobs) > 0", "coalesce(a, 0) = coalesce(a, 0)",
    "name LIKE '%'", "id = 1", "id > 3", "id IN (1, 2)", "a IS NULL", "status = 'new'", "created_at < now() - interval '20 days'",
    "id = (SELECT max(id) FROM jobs)", "x BETWEEN 2 AND 3", "true AND id = 2", "false OR id = 2", "id = 2 OR true",
    "id IS DISTINCT FROM NULL", "id IS NOT DISTINCT FROM id",
]
writes = []
for table, where in itertools.product(tables, predicates):
    writes.append(f"DELETE FROM {table} WHERE {where}")
    writes.append(f"UPDATE {table} SET b = 0 WHERE {where}")
writes += [f"DELETE FROM {t}" for t in tables] + [f"UPDATE {t} SET a = a" for t in tables] + [f"TRUNCATE {t}" for t in tables]
lines = []
for statement in writes:
    lines.append(statement)
    lines.append(f"WITH gone AS ({statement} RETURNING 1) SELECT count(*) FROM gone" if not statement.startswith("TRUNCATE") else statement + " CASCADE")
    lines.append(f"DO $$ BEGIN {statement}; END $$")
    lines.append(f"EXPLAIN ANALYZE {statement}")
    lines.append(f"CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS $$ {statement}; SELECT 1 $$; SELECT pg_temp.f()")
changes = [
    "ALTER TABLE {t} ADD COLUMN extra int", "ALTER TABLE {t} ADD COLUMN extra int DEFAULT 0", "ALTER TABLE {t} ADD COLUMN extra int DEFAULT random()",
    "ALTER TABLE {t} ALTER COLUMN a TYPE bigint", "ALTER TABLE {t} ALTER COLUMN a SET NOT NULL", "ALTER TABLE {t} DROP COLUMN b",
    "ALTER TABLE {t} RENAME COLUMN name TO full_name", "ALTER TABLE {t} RENAME TO renamed", "CREATE INDEX ON {t} (a)",
    "CREATE INDEX ON {t} (a) WHERE a > 2", "CREATE UNIQUE INDEX ON {t} (id)", "ALTER TABLE {t} ADD PRIMARY KEY (x)",
    "ALTER TABLE {t} ADD CHECK (a > -1)", "ALTER TABLE {t} ADD CHECK (a > -1) NOT VALID", "ALTER TABLE {t} SET UNLOGGED",
    "ALTER TABLE {t} ALTER COLUMN name TYPE varchar(200)", "CLUSTER {t} USING {t_bare}_pkey", "REINDEX TABLE {t}",
    "DROP TABLE {t}", "DROP TABLE {t} CASCADE", "ALTER TABLE {t} DISABLE TRIGGER ALL", "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE",
]
for t, change in itertools.product(tables, changes):
    lines.append(change.format(t=t, t_bare=t.split(".")[-1]))
with open(sys.argv[1], "w") as out:
    out.write("\n".join(lines) + "\n")
print(f"{len(lines)} generated statements")
PY
swift build --build-tests
swift test --skip-build --filter "OracleTests/corpus" 2>&1 | tee "$PGDIR/oracle.log" | grep -E "^oracle:|✘|✔ Test run|classified lower|^  (read|write|dangerous) <"
grep -q "Test run with .* passed" "$PGDIR/oracle.log"
