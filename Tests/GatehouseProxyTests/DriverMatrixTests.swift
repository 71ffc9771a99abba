import Foundation
import GatehouseTestSupport
import Testing

/// The drivers applications use, through `gatehouse serve --proxy` to a real PostgreSQL server: each
/// does prepared statements, a transaction, COPY out and in where the driver has it, a statement
/// the proxy refuses, a cancelled query and a reconnect. (psql is in ProxySessionTests.)
@Suite("Guard proxy: driver compatibility", .serialized)
struct DriverMatrixTests {
    static func json(_ result: CommandResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        #expect(result.status == 0, "\(result)", sourceLocation: sourceLocation)
        let line = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(result)", sourceLocation: sourceLocation)
    }

    /// Writes `source` to a fresh folder as `name` and returns its path.
    static func file(_ name: String, _ source: String) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("driver-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent(name).path
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func psycopg3() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let script = """
            import json, sys, threading, psycopg
            out = {}
            with psycopg.connect(sys.argv[1], password=sys.argv[2]) as conn:
                conn.autocommit = True
                cur = conn.cursor()
                out["reads"] = [cur.execute("SELECT balance FROM accounts WHERE id = %s", (i,), prepare=True).fetchone()[0] for i in range(1, 4)]
                with conn.transaction():
                    out["count"] = cur.execute("SELECT count(*) FROM accounts").fetchone()[0]
                with cur.copy("COPY (SELECT id FROM accounts WHERE id <= 3 ORDER BY id) TO STDOUT") as copy:
                    out["copy_out"] = [row[0] for row in copy.rows()]
                try:
                    with cur.copy("COPY accounts FROM STDIN") as copy:
                        copy.write_row((11, 5))
                    out["copy_in"] = "ran"
                except psycopg.Error as e:
                    out["copy_in"] = e.sqlstate + " " + str(e).splitlines()[0]
                try:
                    cur.execute("DELETE FROM accounts WHERE id > %s", (0,))
                    out["delete"] = "ran"
                except psycopg.Error as e:
                    out["delete"] = e.sqlstate + " " + str(e).splitlines()[0]
                threading.Timer(0.5, conn.cancel).start()
                try:
                    cur.execute("SELECT pg_sleep(20)")
                    out["cancel"] = "ran"
                except psycopg.Error as e:
                    out["cancel"] = e.sqlstate
                out["after_cancel"] = cur.execute("SELECT count(*) FROM accounts").fetchone()[0]
            # psycopg removes prepared statements with SQL: DEALLOCATE _pg3_N past prepared_max, DEALLOCATE ALL
            # after a rollback. Each must remove the statement meant, and the session must not fill up.
            with psycopg.connect(sys.argv[1], password=sys.argv[2]) as conn:
                conn.prepared_max = 2
                failures = []
                for round in range(3):
                    for i in range(5):
                        try:
                            conn.execute("SELECT %s::int + " + str(i), (round,), prepare=True).fetchone()
                        except psycopg.Error as e:
                            failures.append(e.sqlstate)
                    conn.rollback()
                conn.autocommit = True
                for i in range(5):
                    conn.execute("SELECT %s::int * " + str(i), (1,), prepare=True)
                out["dealloc_failures"] = failures
                out["server_prepared"] = conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int %%'").fetchone()[0]
            with psycopg.connect(sys.argv[1], password=sys.argv[2]) as again:
                out["reconnect"] = again.execute("SELECT %s::int + 1", (41,)).fetchone()[0]
            print(json.dumps(out))
            """
        let out = try Self.json(try await Command.run("/usr/bin/python3", ["-c", script, harness.conninfo(user: "alice"), harness.tokens["alice"]!]))
        #expect(out["reads"] as? [Int] == [100, 100, 100])
        #expect(out["count"] as? Int == 10)
        #expect(out["copy_out"] as? [String] == ["1", "2", "3"])
        #expect((out["copy_in"] as? String)?.hasPrefix("42501 gatehouse:") == true, "\(out)")
        #expect((out["delete"] as? String)?.hasPrefix("42501 gatehouse:") == true, "\(out)")
        #expect(out["cancel"] as? String == "57014", "\(out)")
        #expect(out["after_cancel"] as? Int == 10)
        #expect(out["dealloc_failures"] as? [String] == [], "\(out)")
        #expect(out["server_prepared"] as? Int == 2, "psycopg keeps prepared_max statements; the database holds as many: \(out)")
        #expect(out["reconnect"] as? Int == 42)
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "10")

        // With a write grant: a pattern bound as a parameter is judged with its value. `%` matches every row: refused
        // as the same text with the constant is; `1%` deletes ids 1 and 10.
        try await harness.grant("alice", role: "write")
        let bound = """
            import json, sys, psycopg
            out = {}
            with psycopg.connect(sys.argv[1], password=sys.argv[2], autocommit=True) as conn:
                for pattern in ["%", "1%"]:
                    try:
                        out[pattern] = conn.execute("DELETE FROM accounts WHERE id::text LIKE %s", (pattern,)).rowcount
                    except psycopg.Error as e:
                        out[pattern] = e.sqlstate + " " + str(e).splitlines()[0]
            print(json.dumps(out))
            """
        let judged = try Self.json(try await Command.run("/usr/bin/python3", ["-c", bound, harness.conninfo(user: "alice"), harness.tokens["alice"]!]))
        #expect((judged["%"] as? String)?.hasPrefix("42501 gatehouse: this is a dangerous action (delete_without_where)") == true, "\(judged)")
        #expect(judged["1%"] as? Int == 2, "\(judged)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "8")

        // What drivers and ORMs send at each connection or transaction, in a session that may write: psycopg's
        // `read_only = False` (BEGIN READ WRITE), Django's set_config('TimeZone', ...), asyncpg's jit switch,
        // SQLAlchemy's current_setting(%s); the optional filter `(%s IS NULL OR id = %s)` judged by the value bound.
        let usual = """
            import json, sys, psycopg
            out = {}
            def attempt(key, conn, text, params=None):
                try:
                    cur = conn.execute(text, params)
                    out[key] = cur.fetchone()[0] if cur.description else cur.rowcount
                except psycopg.Error as e:
                    out[key] = e.sqlstate + " " + str(e).splitlines()[0]
            with psycopg.connect(sys.argv[1], password=sys.argv[2], autocommit=True) as conn:
                conn.read_only = False
                conn.autocommit = False
                attempt("read_write", conn, "SELECT count(*) FROM accounts")
                conn.commit()
                conn.autocommit = True
                attempt("timezone", conn, "SELECT set_config('TimeZone', 'UTC', false)")
                attempt("jit", conn, "SELECT set_config('jit', 'off', false)")
                attempt("work_mem", conn, "SELECT current_setting(%s)", ("work_mem",))
                attempt("conninfo", conn, "SELECT current_setting(%s)", ("primary_conninfo",))
                attempt("one", conn, "DELETE FROM accounts WHERE (%s::int IS NULL OR id = %s)", (5, 5))
                attempt("every", conn, "DELETE FROM accounts WHERE (%s::int IS NULL OR id = %s)", (None, None))
                attempt("coalesce", conn, "UPDATE accounts SET balance = 7 WHERE id = coalesce(%s, id)", (6,))
                attempt("contains", conn, "DELETE FROM accounts WHERE id::text LIKE '%%' || %s || '%%'", ("",))
                # Values with the types their Parse declared: compared as the database compares them.
                pg = conn.pgconn
                def typed(key, sql, types, values):
                    pg.prepare(key.encode(), sql, types)
                    result = pg.exec_prepared(key.encode(), values)
                    out[key] = (result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) or b"").decode() or result.command_status.decode()
                typed("int4", b"DELETE FROM accounts WHERE $1 = $2", [23, 23], [b"1", b"01"])
                typed("bool", b"DELETE FROM accounts WHERE $1 = $2", [16, 16], [b"t", b"yes"])
                typed("bpchar", b"DELETE FROM accounts WHERE id::text LIKE $1", [1042], [b"%  "])
                typed("int4_other", b"DELETE FROM accounts WHERE $1 = $2", [23, 23], [b"1", b"2"])
            print(json.dumps(out))
            """
        let drivers = try Self.json(try await Command.run("/usr/bin/python3", ["-c", usual, harness.conninfo(user: "alice"), harness.tokens["alice"]!]))
        #expect(drivers["read_write"] as? Int == 8, "\(drivers)")
        #expect(drivers["timezone"] as? String == "UTC", "\(drivers)")
        #expect(drivers["jit"] as? String == "off", "\(drivers)")
        #expect(drivers["work_mem"] as? String == "4MB", "\(drivers)")
        #expect((drivers["conninfo"] as? String)?.hasPrefix("42501 gatehouse:") == true, "\(drivers)")
        #expect(drivers["one"] as? Int == 1, "\(drivers)")
        #expect((drivers["every"] as? String)?.hasPrefix("42501 gatehouse: this is a dangerous action (delete_without_where)") == true, "\(drivers)")
        #expect(drivers["coalesce"] as? Int == 1, "\(drivers)")
        #expect((drivers["contains"] as? String)?.hasPrefix("42501 gatehouse: this is a dangerous action (delete_without_where)") == true, "\(drivers)")
        for key in ["int4", "bool", "bpchar"] { #expect(drivers[key] as? String == "42501", "\(key): \(drivers)") }
        #expect(drivers["int4_other"] as? String == "DELETE 0", "\(drivers)")
        #expect(try await harness.direct("SELECT count(*) || ':' || sum(balance) FROM accounts") == "7:607")
    }

    /// libpq's COPY FROM STDIN through PQexecParams (psycopg's libpq binding): the extended
    /// protocol with a Sync the database ignores while copying; statements after it still pair up.
    /// Then psycopg's pipeline mode: statements sent before the ones ahead have answered. A trigger (the
    /// guard does not follow triggers) that turns standard_conforming_strings off from inside,
    /// followed in the pipeline by a DELETE that is harmless read with it on and deletes every row
    /// read with it off: held until the INSERT that fires it has answered (the session then ends on the reported change), or refused when sent
    /// in the same batch; nothing is deleted either way.
    @Test func psycopgExtendedCopyAndPipelines() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice", role: "write")
        _ = try await harness.direct("""
            CREATE TABLE flips(x int);
            CREATE FUNCTION flip() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); RETURN NEW; END $$;
            CREATE TRIGGER flip BEFORE INSERT ON flips FOR EACH ROW EXECUTE FUNCTION flip();
            """)
        let script = #"""
            import json, sys, psycopg
            dsn, password = sys.argv[1], sys.argv[2]
            out = {}
            def attempt(fn):
                try:
                    return fn()
                except psycopg.Error as e:
                    return (e.sqlstate or "") + " " + str(e).splitlines()[0]
            with psycopg.connect(dsn, password=password, autocommit=True) as conn:
                pg = conn.pgconn
                res = pg.exec_params(b"COPY accounts FROM STDIN", [])
                out["copy_status"] = int(res.status)
                pg.put_copy_data(b"21\t7\n22\t7\n")
                pg.put_copy_end()
                res = pg.get_result()
                out["copy_result"] = f"{int(res.status)} {res.command_status.decode()}"
                while pg.get_result() is not None:
                    pass
                out["after_copy"] = [pg.exec_params(b"SELECT $1::int * 2", [str(i).encode()]).get_value(0, 0).decode() for i in range(3)]
                out["prepared"] = [conn.execute("SELECT balance FROM accounts WHERE id = %s", (i,), prepare=True).fetchone()[0] for i in (21, 22, 1)]
                out["error"] = attempt(lambda: conn.execute("SELECT 1/0").fetchone())
                out["after_error"] = conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
                with conn.pipeline() as p:
                    cursors = [conn.execute("SELECT %s::int", (i,)) for i in range(3)]
                    p.sync()
                    tail = conn.execute(r"SELECT E'a\\b' = 'a' || chr(92) || 'b'")
                    p.sync()
                out["pipeline"] = [str(c.fetchone()[0]) for c in cursors] + [str(tail.fetchone()[0])]
            delete = r"DELETE FROM accounts WHERE balance::text = 'a\'' OR true --'"
            def pipeline(sync_between):
                conn = psycopg.connect(dsn, password=password, autocommit=True)
                try:
                    with conn.pipeline() as p:
                        conn.execute("INSERT INTO flips VALUES (1)")
                        if sync_between:
                            p.sync()
                        conn.execute(delete)
                        p.sync()
                    return "ran"
                finally:
                    conn.close()
            out["across_batches"] = attempt(lambda: pipeline(True))
            out["same_batch"] = attempt(lambda: pipeline(False))
            print(json.dumps(out))
            """#
        let out = try Self.json(try await Command.run("/usr/bin/python3", ["-c", script, harness.conninfo(user: "alice"), harness.tokens["alice"]!]))
        #expect(out["copy_status"] as? Int == 4, "COPY_IN: \(out)")
        #expect(out["copy_result"] as? String == "1 COPY 2", "\(out)")
        #expect(out["after_copy"] as? [String] == ["0", "2", "4"], "\(out)")
        #expect(out["prepared"] as? [Int] == [7, 7, 100], "\(out)")
        #expect((out["error"] as? String)?.hasPrefix("22012") == true, "\(out)")
        #expect(out["after_error"] as? Int == 12, "\(out)")
        #expect(out["pipeline"] as? [String] == ["0", "1", "2", "True"], "\(out)")
        #expect((out["across_batches"] as? String)?.contains("standard_conforming_strings = off") == true, "\(out)")
        #expect((out["same_batch"] as? String)?.hasPrefix("0A000 gatehouse: a statement earlier in this batch changed standard_conforming_strings") == true, "\(out)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "12", "nothing was deleted")
    }

    /// Batches of statements whose texts have non-ASCII characters or backslashes, each sent before the one ahead
    /// has answered: psycopg's executemany with client-side binding (Django's cursor), a pipeline, pgjdbc's
    /// addBatch of texts. Each is read by the database behind the proxy's check of the settings, and runs.
    @Test func batchesOfTextsWithNonASCIICharactersRun() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice", role: "write")
        _ = try await harness.direct("CREATE TABLE names(id int, name text); CREATE TABLE \"nämes\"(id int)")
        let script = #"""
            import json, sys, psycopg
            out = {}
            with psycopg.connect(sys.argv[1], password=sys.argv[2], autocommit=True) as conn:
                cur = psycopg.ClientCursor(conn)
                cur.executemany("INSERT INTO names VALUES (%s, %s)", [(1, "José"), (2, "Zoë"), (3, "a\\b")])
                with conn.pipeline() as p:
                    rows = [conn.execute("SELECT 'ü' || %s::text", (i,)) for i in range(3)]
                    p.sync()
                out["pipeline"] = [r.fetchone()[0] for r in rows]
                # A batch behind one still running, whose statement must be alone in its transaction: no statement of
                # the proxy's goes ahead of it.
                with conn.pipeline() as p:
                    conn.execute("SELECT pg_sleep(0.2)")
                    p.sync()
                    conn.execute('VACUUM "nämes"')
                    p.sync()
                out["vacuum"] = "ran"
                out["names"] = [r[0] for r in conn.execute("SELECT name FROM names ORDER BY id")]
            print(json.dumps(out))
            """#
        let out = try Self.json(try await Command.run("/usr/bin/python3", ["-c", script, harness.conninfo(user: "alice"), harness.tokens["alice"]!]))
        #expect(out["pipeline"] as? [String] == ["ü0", "ü1", "ü2"], "\(out)")
        #expect(out["vacuum"] as? String == "ran", "\(out)")
        #expect(out["names"] as? [String] == ["José", "Zoë", "a\\b"], "\(out)")
    }

    /// asyncpg: `prepare()` is Parse, Describe and Flush without Sync, and the transaction that
    /// follows begins with a simple Query, as PostgreSQL allows. Prepared reads, a transaction,
    /// COPY out and in (`copy_records_to_table`), a refused statement, a cancelled query and a
    /// reconnect, through the proxy.
    @Test func asyncpg() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let script = """
            import asyncio, json, sys, asyncpg
            async def main():
                out = {}
                conn = await asyncpg.connect(sys.argv[1], password=sys.argv[2])
                stmt = await conn.prepare("SELECT balance FROM accounts WHERE id = $1")
                async with conn.transaction():
                    out["reads"] = [await stmt.fetchval(i) for i in range(1, 4)]
                out["fetch"] = len(await conn.fetch("SELECT id FROM accounts WHERE id <= $1", 5))
                chunks = []
                async def sink(data):
                    chunks.append(data)
                await conn.copy_from_query("SELECT id FROM accounts WHERE id <= 3 ORDER BY id", output=sink)
                out["copy_out"] = b"".join(chunks).decode().split()
                for name, call in [("delete", conn.execute("DELETE FROM accounts")),
                                   ("copy_in", conn.copy_records_to_table("accounts", records=[(11, 5)]))]:
                    try:
                        await call
                        out[name] = "ran"
                    except asyncpg.PostgresError as e:
                        out[name] = e.sqlstate + " " + str(e).splitlines()[0]
                try:
                    await conn.execute("SELECT pg_sleep(20)", timeout=0.5)
                    out["cancel"] = "ran"
                except asyncio.TimeoutError:
                    out["cancel"] = "timed out"
                out["after_cancel"] = await conn.fetchval("SELECT count(*) FROM accounts")
                await conn.close()
                # asyncpg's FAQ: JIT off at connection, a startup parameter that changes how, not what, the server runs.
                again = await asyncpg.connect(sys.argv[1], password=sys.argv[2], server_settings={"jit": "off", "work_mem": "8MB"})
                out["reconnect"] = await again.fetchval("SELECT $1::int + 1", 41)
                out["jit"] = await again.fetchval("SHOW jit")
                await again.close()
                print(json.dumps(out))
            asyncio.run(main())
            """
        let out = try Self.json(try await Command.run("/usr/bin/python3", ["-c", script, harness.url(user: "alice"), harness.tokens["alice"]!]))
        #expect(out["reads"] as? [Int] == [100, 100, 100])
        #expect(out["fetch"] as? Int == 5)
        #expect(out["copy_out"] as? [String] == ["1", "2", "3"])
        #expect((out["delete"] as? String)?.hasPrefix("42501 gatehouse:") == true, "\(out)")
        #expect((out["copy_in"] as? String)?.hasPrefix("42501 gatehouse:") == true, "a read grant does not cover COPY FROM: \(out)")
        #expect(out["cancel"] as? String == "timed out")
        #expect(out["after_cancel"] as? Int == 10)
        #expect(out["reconnect"] as? Int == 42)
        #expect(out["jit"] as? String == "off", "\(out)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "10")

        // With a write grant, copy_records_to_table writes.
        try await harness.grant("alice", role: "write")
        let write = """
            import asyncio, sys, asyncpg
            async def main():
                conn = await asyncpg.connect(sys.argv[1], password=sys.argv[2])
                print(await conn.copy_records_to_table("accounts", records=[(11, 5), (12, 6)]))
                await conn.close()
            asyncio.run(main())
            """
        let written = try await Command.run("/usr/bin/python3", ["-c", write, harness.url(user: "alice"), harness.tokens["alice"]!])
        #expect(written.status == 0 && written.stdout.contains("COPY 2"), "\(written)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "12")
    }

    /// pgjdbc (Debian's libpostgresql-jdbc-java), with server-side prepared statements from the first use.
    @Test func pgjdbc() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let source = """
            import java.io.*;
            import java.sql.*;
            import java.util.*;
            import org.postgresql.PGConnection;
            import org.postgresql.copy.CopyManager;

            public class Driver {
                static String quote(Object value) {
                    return value instanceof String ? "\\"" + ((String) value).replace("\\\\", "\\\\\\\\").replace("\\"", "\\\\\\"") + "\\"" : String.valueOf(value);
                }
                static String failure(SQLException e) { return e.getSQLState() + " " + e.getMessage().split("\\n")[0]; }

                public static void main(String[] args) throws Exception {
                    Properties props = new Properties();
                    props.setProperty("user", args[1]);
                    props.setProperty("password", args[2]);
                    props.setProperty("sslmode", "disable");
                    props.setProperty("prepareThreshold", "1");
                    Map<String, Object> out = new LinkedHashMap<>();
                    try (Connection c = DriverManager.getConnection(args[0], props)) {
                        PreparedStatement ps = c.prepareStatement("SELECT balance FROM accounts WHERE id = ?");
                        StringBuilder reads = new StringBuilder();
                        for (int i = 1; i <= 4; i++) {
                            ps.setInt(1, i);
                            try (ResultSet rs = ps.executeQuery()) { rs.next(); reads.append(reads.length() == 0 ? "" : ",").append(rs.getInt(1)); }
                        }
                        out.put("reads", reads.toString());
                        // Connection pools (HikariCP's default) ask isValid, which sends an empty query.
                        out.put("valid", c.isValid(5));
                        c.setAutoCommit(false);
                        // pgjdbc sends BEGIN in the same batch as the transaction's first statement, here one with
                        // non-ASCII text (which the proxy holds back behind a statement that may run code).
                        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 'café' || count(*) FROM accounts")) { rs.next(); out.put("first_in_tx", rs.getString(1)); }
                        catch (SQLException e) { out.put("first_in_tx", failure(e)); }
                        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM accounts")) { rs.next(); out.put("count", rs.getInt(1)); }
                        c.commit();
                        c.setAutoCommit(true);
                        try (PreparedStatement delete = c.prepareStatement("DELETE FROM accounts WHERE id > ?")) {
                            delete.setInt(1, 0);
                            delete.executeUpdate();
                            out.put("delete", "ran");
                        } catch (SQLException e) { out.put("delete", failure(e)); }
                        CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
                        StringWriter rows = new StringWriter();
                        copy.copyOut("COPY (SELECT id FROM accounts WHERE id <= 3 ORDER BY id) TO STDOUT", rows);
                        out.put("copy_out", rows.toString().trim().replace("\\n", ","));
                        try {
                            copy.copyIn("COPY accounts FROM STDIN", new StringReader("11\\t5\\n"));
                            out.put("copy_in", "ran");
                        } catch (SQLException e) { out.put("copy_in", failure(e)); }
                        try (Statement s = c.createStatement()) {
                            s.setQueryTimeout(1);
                            s.execute("SELECT pg_sleep(20)");
                            out.put("cancel", "ran");
                        } catch (SQLException e) { out.put("cancel", e.getSQLState()); }
                        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM accounts")) { rs.next(); out.put("after_cancel", rs.getInt(1)); }
                    }
                    try (Connection again = DriverManager.getConnection(args[0], props);
                         PreparedStatement ps = again.prepareStatement("SELECT ?::int + 1")) {
                        ps.setInt(1, 41);
                        try (ResultSet rs = ps.executeQuery()) { rs.next(); out.put("reconnect", rs.getInt(1)); }
                    }
                    StringBuilder json = new StringBuilder("{");
                    for (Map.Entry<String, Object> e : out.entrySet()) {
                        json.append(json.length() == 1 ? "" : ",").append(quote(e.getKey())).append(":").append(quote(e.getValue()));
                    }
                    System.out.println(json.append("}"));
                }
            }
            """
        let path = try Self.file("Driver.java", source)
        let url = "jdbc:postgresql://127.0.0.1:\(harness.proxyPort)/prod-db"
        let out = try Self.json(try await Command.run("/usr/bin/java", ["-cp", "/usr/share/java/postgresql.jar", path, url, "alice", harness.tokens["alice"]!]))
        #expect(out["reads"] as? String == "100,100,100,100")
        #expect(out["count"] as? Int == 10)
        #expect(out["first_in_tx"] as? String == "café10", "\(out)")
        #expect(out["valid"] as? Bool == true, "\(out)")
        // pgjdbc prints the severity before the message: "ERROR: gatehouse: ...".
        #expect((out["delete"] as? String)?.hasPrefix("42501 ERROR: gatehouse:") == true, "\(out)")
        #expect(out["copy_out"] as? String == "1,2,3")
        #expect((out["copy_in"] as? String)?.hasPrefix("42501 ERROR: gatehouse:") == true, "\(out)")
        #expect(out["cancel"] as? String == "57014", "\(out)")
        #expect(out["after_cancel"] as? Int == 10)
        #expect(out["reconnect"] as? Int == 42)
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "10")
    }

    /// node-postgres (Debian's node-pg, unpacked by scripts/install-deps.sh into .build-deps): named
    /// prepared statements, a transaction, a cursor read in pieces (PortalSuspended), a refusal, a
    /// cancel and a reconnect. node-postgres has no COPY of its own (that is pg-copy-streams).
    @Test func nodePostgres() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let source = """
            const { Client } = require('pg');
            const Cursor = require('pg-cursor');
            (async () => {
              const cfg = { host: '127.0.0.1', port: Number(process.argv[2]), user: process.argv[3], password: process.argv[4], database: 'prod-db' };
              const out = {};
              const c = new Client(cfg);
              await c.connect();
              out.reads = [];
              for (let i = 1; i <= 3; i++) {
                out.reads.push((await c.query({ name: 'balance', text: 'SELECT balance FROM accounts WHERE id = $1', values: [i] })).rows[0].balance);
              }
              await c.query('BEGIN');
              out.count = Number((await c.query('SELECT count(*) AS n FROM accounts')).rows[0].n);
              await c.query('COMMIT');
              const cursor = c.query(new Cursor('SELECT id FROM accounts WHERE id > $1 ORDER BY id', [0]));
              out.cursor = (await cursor.read(3)).map(r => r.id).concat((await cursor.read(2)).map(r => r.id));
              await cursor.close();
              try { await c.query('DELETE FROM accounts WHERE id > $1', [0]); out.delete = 'ran'; }
              catch (e) { out.delete = e.code + ' ' + e.message.split('\\n')[0]; }
              const canceler = new Client(cfg);
              const sleeping = c.query('SELECT pg_sleep(20)');
              setTimeout(() => canceler.cancel(c, c.activeQuery), 500);
              try { await sleeping; out.cancel = 'ran'; } catch (e) { out.cancel = e.code; }
              out.after_cancel = Number((await c.query('SELECT count(*) AS n FROM accounts')).rows[0].n);
              await c.end();
              const again = new Client(cfg);
              await again.connect();
              out.reconnect = (await again.query('SELECT $1::int + 1 AS v', [41])).rows[0].v;
              await again.end();
              console.log(JSON.stringify(out));
            })().catch(e => { console.error(e); process.exit(1); });
            """
        let path = try Self.file("driver.js", source)
        let modules = ProxyHarness.repositoryRoot.appendingPathComponent(".build-deps/node-pg/usr/share/nodejs").path
        let out = try Self.json(try await Command.run("/usr/bin/env", ["NODE_PATH=\(modules)", "node", path, "\(harness.proxyPort)", "alice", harness.tokens["alice"]!]))
        #expect(out["reads"] as? [Int] == [100, 100, 100])
        #expect(out["count"] as? Int == 10)
        #expect(out["cursor"] as? [Int] == [1, 2, 3, 4, 5])
        #expect((out["delete"] as? String)?.hasPrefix("42501 gatehouse:") == true, "\(out)")
        #expect(out["cancel"] as? String == "57014", "\(out)")
        #expect(out["after_cancel"] as? Int == 10)
        #expect(out["reconnect"] as? Int == 42)
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "10")
    }
}
