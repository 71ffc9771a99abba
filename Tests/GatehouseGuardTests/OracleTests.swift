import Foundation
import GatehouseCore
import GatehouseTestSupport
import PostgresNIO
import Testing
@testable import GatehouseGuard

/// What a statement really did to a database, observed inside a transaction that is then rolled back.
struct ObservedEffect: Equatable, CustomStringConvertible {
    var level: RiskLevel = .read
    var reasons: [String] = []

    mutating func raise(_ level: RiskLevel, _ reason: String) {
        self.level = max(self.level, level)
        reasons.append("\(level.rawValue): \(reason)")
    }

    var description: String { reasons.isEmpty ? "no effect" : reasons.joined(separator: "; ") }
}

/// The database as the judge: every corpus statement runs on a real PostgreSQL server, as a role that
/// owns a fixture database but is no superuser, inside a transaction that is rolled back. Its effect is
/// read from the database itself (rows of the fixture tables changed and what share of each, tables and
/// columns dropped, renamed or retyped, tables rewritten or indexed under a lock that blocks writes,
/// catalog objects created or altered, unsafe settings changed), a level is derived from that effect,
/// and the classifier may never say less. Every fixture table holds one row of NULLs, so a predicate
/// that looks at the row cannot select all of it by accident of the data.
///
/// Statements that fail (a table the fixture does not have, a privilege only a superuser holds, a
/// statement that cannot run in a transaction) are counted as not run; texts with their own
/// transaction control, a COPY stream or a backslash (psql would read a command there), or that do
/// not parse, are skipped. `GATEHOUSE_ORACLE_EXTRA` names a file of more statements
/// (one per line) for a longer run (`scripts/oracle-corpus.sh`). The catalog digest leaves out what
/// is shared by the whole server (roles, other databases), which other tests change at the same time.
@Suite("The database as the judge", .serialized)
struct OracleTests {
    static let tables = ["t", "t2", "users", "orders", "accounts", "jobs", "docs", "audit", "stats", "queue", "logs", "log",
                         "employees", "customers", "tickets", "prices", "posts", "sales", "items", "events", "s", "a", "payments",
                         "sessions", "roles", "grants", "deletions", "deleted_items", "drop_log", "leak", "loot",
                         "\"delete\"", "\"update\"", "\"drop\"", "\"truncate\""]
    static let columns = """
        id int, a int, b int, c int, x int, y int, n int, name text, email text, status text, active boolean,
        total int, balance int, seen boolean, created_at timestamptz, updated_at timestamptz, user_id int,
        parent_id int, body text, note text, value int, amount int, price int, tenant_id int, deleted boolean,
        score int, role text, kind text, data jsonb, tags text[], password text, title text, customer_id int, v int, d int
        """

    @Test("no statement of the corpus is classified lower than what it did to a real database")
    func corpus() async throws {
        var texts = CorpusEntry.sql.map(\.text)
        if let extra = ProcessInfo.processInfo.environment["GATEHOUSE_ORACLE_EXTRA"], !extra.isEmpty {
            let content = try String(contentsOfFile: extra, encoding: .utf8)
            texts += content.split(separator: "\n").map(String.init).filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        let report = try await Self.judge(texts)
        print("oracle: \(report.summary)")
        #expect(report.underBlocked.isEmpty, "classified lower than what the database did:\n\(report.underBlocked.joined(separator: "\n"))")
        // The oracle must see enough to mean something.
        #expect(report.ran >= texts.count * 2 / 5, "\(report.summary)")
        #expect(report.effects[.dangerous, default: 0] >= 40, "\(report.summary)")
        #expect(report.effects[.write, default: 0] >= 40, "\(report.summary)")
    }

    @Test("the oracle itself tells a harmless statement, a write and each kind of damage apart")
    func oracleSeesEffects() async throws {
        let expected: [(String, RiskLevel)] = [
            ("SELECT * FROM users", .read),
            ("SET search_path = public", .read),
            ("UPDATE users SET name = 'x' WHERE id = 2", .write),
            ("INSERT INTO orders(id) VALUES (99)", .write),
            ("CREATE TABLE fresh(i int)", .write),
            ("ALTER TABLE users ADD COLUMN extra int", .write),
            ("CREATE INDEX CONCURRENTLY ON users(id)", .read),  // cannot run in a transaction: not run
            ("DELETE FROM users", .dangerous),
            ("UPDATE users SET a = 1 WHERE id IS NULL OR id IS NOT NULL", .dangerous),
            ("DELETE FROM users WHERE id > 0", .write),  // the row of NULLs stays
            ("DROP TABLE orders", .dangerous),
            ("ALTER TABLE users RENAME COLUMN email TO mail", .dangerous),
            ("ALTER TABLE users ALTER COLUMN a TYPE bigint", .dangerous),
            ("TRUNCATE jobs", .dangerous),
            ("CREATE INDEX ON orders(total)", .dangerous),
            ("SET standard_conforming_strings = off", .dangerous),
        ]
        let report = try await Self.judge(expected.map(\.0))
        for (text, level) in expected {
            #expect(report.observed[text]?.level ?? .read == level, "\(text): \(report.observed[text].map(\.description) ?? "not run")")
        }
    }

    struct Report {
        var ran = 0
        var notRun = 0
        var skipped = 0
        var underBlocked: [String] = []
        var overBlocked = 0
        var effects: [RiskLevel: Int] = [:]
        var observed: [String: ObservedEffect] = [:]

        var summary: String {
            "\(ran) statements ran, \(notRun) failed on the database (not run), \(skipped) skipped (transaction control, COPY streams); "
                + "effects: \(effects[.dangerous, default: 0]) dangerous, \(effects[.write, default: 0]) write, \(effects[.read, default: 0]) none; "
                + "classified lower than the effect: \(underBlocked.count); higher (over-blocked): \(overBlocked)"
        }
    }

    static func judge(_ texts: [String]) async throws -> Report {
        let server = try TestDatabase.postgresServerURL()
        let suffix = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        let database = "oracle_\(suffix)", role = "oracle_\(suffix)", password = "oracle-\(suffix)"
        try await TestDatabase.withConnection(server) { admin in
            _ = try await admin.simpleQuery("CREATE ROLE \(role) LOGIN PASSWORD '\(password)'").get()
            _ = try await admin.simpleQuery("CREATE DATABASE \(database) OWNER \(role)").get()
            _ = try await admin.simpleQuery("ALTER ROLE \(role) SET statement_timeout = '3s'").get()
            _ = try await admin.simpleQuery("ALTER ROLE \(role) SET lock_timeout = '1s'").get()
        }
        defer {
            Task {
                try? await TestDatabase.withConnection(server) { admin in
                    _ = try await admin.simpleQuery("DROP DATABASE IF EXISTS \(database) WITH (FORCE)").get()
                    _ = try await admin.simpleQuery("DROP ROLE IF EXISTS \(role)").get()
                }
            }
        }
        guard var parts = URLComponents(string: server) else { throw TestFailure("not a URL: \(server)") }
        parts.path = "/" + database
        let superuserURL = parts.string ?? server
        parts.user = role
        parts.password = password
        let roleURL = parts.string ?? server
        // The snapshot function belongs to the superuser, in a schema the role cannot change.
        _ = try await psql(superuserURL, Self.snapshotFunction(owner: role))
        _ = try await psql(roleURL, fixture)
        var report = Report()
        var pending: [Int] = []
        for (index, text) in texts.enumerated() {
            if Self.skipped(text) { report.skipped += 1 } else { pending.append(index) }
        }
        // One psql runs them all, each between two snapshots in a transaction it then rolls back; a
        // statement that ends the connection is not run, and psql starts again after it.
        var observed: [Int: ObservedEffect] = [:]
        while !pending.isEmpty {
            var script = ""
            for index in pending {
                script += "BEGIN;\n\\echo @@@ \(index)\nSELECT '###' || oracle.snapshot()::text;\n\(texts[index])\n;\nSELECT '###' || oracle.snapshot()::text;\nROLLBACK;\nDEALLOCATE ALL;\n"
            }
            let output = try await psql(roleURL, script, stopOnError: false)
            var current: Int?
            var snapshots: [[String: Any]] = []
            func finish() {
                guard let index = current else { return }
                if snapshots.count == 2 { observed[index] = derive(before: snapshots[0], after: snapshots[1]) }
            }
            var reached = -1
            for line in output.stdout.split(separator: "\n") {
                if line.hasPrefix("@@@ "), let index = Int(line.dropFirst(4)) {
                    finish()
                    current = index
                    snapshots = []
                    reached = pending.firstIndex(of: index) ?? reached
                } else if line.hasPrefix("###"), let json = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(3).utf8)) as? [String: Any] {
                    snapshots.append(json)
                }
            }
            finish()
            guard reached >= 0 else { throw TestFailure("psql ran nothing: \(output)") }
            if ProcessInfo.processInfo.environment["ORACLE_DEBUG"] != nil { try? output.stderr.write(toFile: "/tmp/oracle-stderr.txt", atomically: true, encoding: .utf8) }
            pending.removeFirst(reached + 1)
        }
        let classifier = SQLClassifier()
        for (index, text) in texts.enumerated() where !Self.skipped(text) {
            guard let effect = observed[index] else { report.notRun += 1; continue }
            report.ran += 1
            report.observed[text] = effect
            report.effects[effect.level, default: 0] += 1
            let classified = classifier.classify(text).risk
            if classified < effect.level {
                report.underBlocked.append("\(classified.rawValue) < \(effect.level.rawValue) [\(effect)]: \(text)")
            } else if classified > effect.level {
                report.overBlocked += 1
            }
        }
        return report
    }

    static func psql(_ url: String, _ script: String, stopOnError: Bool = true) async throws -> CommandResult {
        let result = try await Command.run("/usr/bin/psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=\(stopOnError ? 1 : 0)", url], input: script)
        if stopOnError, result.status != 0 { throw TestFailure("psql failed: \(result)") }
        return result
    }

    static func derive(before: [String: Any], after: [String: Any]) -> ObservedEffect {
        var effect = ObservedEffect()
        let tablesBefore = before["tables"] as? [String: [String: Any]] ?? [:]
        let tablesAfter = after["tables"] as? [String: [String: Any]] ?? [:]
        for (name, was) in tablesBefore {
            guard let now = tablesAfter[name] else {
                effect.raise(.dangerous, "table \(name) dropped, renamed or moved")
                continue
            }
            let rowsBefore = was["rows"] as? Int ?? 0
            let rows = now["rows"] as? Int ?? 0, touched = now["touched"] as? Int ?? 0
            let survivors = rows - touched
            if rowsBefore >= 2, survivors == 0 {
                effect.raise(.dangerous, "every row of \(name) deleted or changed")
            } else if touched > 0 || survivors < rowsBefore {
                effect.raise(.write, "\(rowsBefore - survivors) of \(rowsBefore) rows of \(name) deleted or changed, \(touched) written")
            }
            let columnsBefore = was["columns"] as? [String: String] ?? [:], columns = now["columns"] as? [String: String] ?? [:]
            for (column, type) in columnsBefore where columns[column] != type {
                effect.raise(.dangerous, "column \(name).\(column) dropped, renamed or retyped")
            }
            let locks = now["locks"] as? [String] ?? []
            if was["file"] as? Int != now["file"] as? Int, locks.contains("AccessExclusiveLock") {
                effect.raise(.dangerous, "\(name) rewritten under ACCESS EXCLUSIVE")
            }
            if (now["indexes"] as? Int ?? 0) > (was["indexes"] as? Int ?? 0), locks.contains("ShareLock") {
                effect.raise(.dangerous, "index built on \(name) while writes were blocked (SHARE)")
            }
        }
        if before["catalog"] as? String != after["catalog"] as? String {
            effect.raise(.write, "catalog objects created, altered or dropped")
        }
        let settingsBefore = before["settings"] as? [String: String] ?? [:], settings = after["settings"] as? [String: String] ?? [:]
        for (name, value) in settingsBefore where settings[name] != value {
            // Read-only switched on is safer, not worse; switched off, a write (what a write grant allows).
            if SQLNodeRule.readOnlySettings.contains(name) {
                if settings[name] != "on" { effect.raise(.write, "setting \(name) changed from \(value) to \(settings[name] ?? "?")") }
                continue
            }
            effect.raise(.dangerous, "setting \(name) changed from \(value) to \(settings[name] ?? "?")")
        }
        return effect
    }

    /// Texts the oracle does not run in its transaction: their own transaction control (they would
    /// commit), COPY streams (STDIN, STDOUT), and texts PostgreSQL's parser refuses (the server refuses
    /// them too; psql could read past their end).
    static func skipped(_ text: String) -> Bool {
        let upper = text.uppercased()
        if upper.contains("STDIN") || upper.contains("STDOUT") || text.contains("\\") { return true }
        guard case let .success(json) = PgQuery.parse(text),
              case let .success(controlsTransaction) = ParseTreeReader.read(json, maximumDepth: 4_000, { tree in
                  (tree["stmts"]?.elements ?? []).contains { $0["stmt"]?.tagged?.type == "TransactionStmt" }
              }) else { return true }
        return controlsTransaction
    }

    /// The fixture, made by the role (so it owns what statements may alter or drop): every table with
    /// the same columns, five rows of varied values and one row of NULLs; a schema `app` with a table `t`.
    static var fixture: String {
        var sql = "CREATE SCHEMA app;\n"
        for table in tables + ["app.t"] {
            sql += "CREATE TABLE \(table) (\(columns));\n"
            sql += """
                INSERT INTO \(table) (id, a, b, c, x, y, n, name, email, status, active, total, balance, seen, created_at, user_id, value, amount, price, score, role, kind)
                SELECT g, g, g * 2, g % 2, g, 10 - g, g, 'name' || g, 'u' || g || '@example.com', (ARRAY['active', 'inactive', 'new'])[1 + g % 3],
                       g % 2 = 0, g * 10, g * 100, g % 2 = 1, now() - g * interval '10 days', g, g, g, g, g, 'user', 'k' || g
                FROM generate_series(1, 5) g;
                INSERT INTO \(table) DEFAULT VALUES;

                """
        }
        return sql + """
            CREATE SEQUENCE orders_id_seq;
            CREATE INDEX orders_customer_idx ON orders(customer_id);
            CREATE VIEW v AS SELECT 1 AS id, 2 AS a;
            CREATE VIEW open_orders AS SELECT 1 AS id, 'new' AS status;
            CREATE MATERIALIZED VIEW mv AS SELECT 1 AS id, 2 AS a;
            CREATE MATERIALIZED VIEW daily_totals AS SELECT now()::date AS day, 10 AS total;
            CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
            """
    }

    /// `oracle.snapshot()`: per fixture table its rows, rows written in this transaction, columns, file
    /// node, index count and the locks this session holds on it; a digest of the catalog outside the
    /// system schemas; the settings the classifier calls unsafe.
    static func snapshotFunction(owner: String) -> String {
        let unsafe = (SQLNodeRule.unsafeSettings.union(SQLNodeRule.roleSettings)).sorted().map { "'\($0)'" }.joined(separator: ", ")
        let names = (tables.map { "public.\($0)" } + ["app.t"]).map { "'\($0)'" }.joined(separator: ", ")
        return """
            CREATE SCHEMA oracle;
            GRANT USAGE ON SCHEMA oracle TO \(owner);
            CREATE FUNCTION oracle.snapshot() RETURNS json LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
            DECLARE
              tables jsonb := '{}';
              name text;
              info jsonb;
              xid text := pg_current_xact_id_if_assigned()::text;
            BEGIN
              FOREACH name IN ARRAY ARRAY[\(names)] LOOP
                CONTINUE WHEN to_regclass(name) IS NULL;
                EXECUTE format('SELECT jsonb_build_object(''rows'', count(*), ''touched'', count(*) FILTER (WHERE xmin::text = %L)) FROM %s', coalesce(xid, ''), name) INTO info;
                info := info || jsonb_build_object(
                  'columns', (SELECT jsonb_object_agg(attname, format_type(atttypid, atttypmod)) FROM pg_attribute WHERE attrelid = to_regclass(name) AND attnum > 0 AND NOT attisdropped),
                  'file', (SELECT relfilenode FROM pg_class WHERE oid = to_regclass(name)),
                  'indexes', (SELECT count(*) FROM pg_index WHERE indrelid = to_regclass(name)),
                  'locks', (SELECT coalesce(jsonb_agg(mode), '[]') FROM pg_locks WHERE relation = to_regclass(name) AND pid = pg_backend_pid() AND granted));
                tables := tables || jsonb_build_object(name, info);
              END LOOP;
              RETURN json_build_object(
                'tables', tables,
                'catalog', (SELECT md5(coalesce(string_agg(item, '|' ORDER BY item), '')) FROM (
                    SELECT concat_ws(':', 'c', c.oid::regclass, c.relkind, c.relnatts, array_to_string(c.reloptions, ',')) AS item
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'oracle') AND n.nspname NOT LIKE 'pg\\_%'
                    UNION ALL SELECT concat_ws(':', 'a', a.attrelid::regclass, a.attname, a.atttypid, a.attnotnull, a.atthasdef)
                      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'oracle') AND n.nspname NOT LIKE 'pg\\_%' AND a.attnum > 0 AND NOT a.attisdropped
                    UNION ALL SELECT concat_ws(':', 'k', k.conrelid::regclass, k.conname, k.contype, k.convalidated)
                      FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'oracle') AND n.nspname NOT LIKE 'pg\\_%'
                    UNION ALL SELECT concat_ws(':', 'p', p.oid::regprocedure, md5(p.prosrc))
                      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'oracle') AND n.nspname NOT LIKE 'pg\\_%'
                    UNION ALL SELECT concat_ws(':', 'n', nspname) FROM pg_namespace
                    UNION ALL SELECT concat_ws(':', 'g', tgrelid::regclass, tgname, tgenabled) FROM pg_trigger WHERE NOT tgisinternal
                    UNION ALL SELECT concat_ws(':', 'r', ev_class::regclass, rulename, ev_enabled) FROM pg_rewrite WHERE ev_class >= 16384
                    UNION ALL SELECT concat_ws(':', 'e', extname) FROM pg_extension
                    UNION ALL SELECT concat_ws(':', 's', setdatabase, setrole, array_to_string(setconfig, ',')) FROM pg_db_role_setting
                      WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
                    UNION ALL SELECT concat_ws(':', 'o', relname, relrowsecurity, relforcerowsecurity) FROM pg_class WHERE relnamespace = 'public'::regnamespace
                  ) items),
                'settings', (SELECT json_object_agg(s.name, s.setting) FROM pg_settings s WHERE s.name IN (\(unsafe))));
            END $f$;
            GRANT EXECUTE ON FUNCTION oracle.snapshot() TO \(owner);
            """
    }
}
