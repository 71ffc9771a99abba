import Foundation
import GatehouseTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// psql, psycopg and the gatehouse CLI against `gatehouse serve --proxy` and a real PostgreSQL server.
@Suite(.serialized) struct ProxySessionTests {
    @Test func signInNeedsAGrantAndTheUsersOwnToken() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }

        let noGrant = try await harness.psql("alice", "SELECT 1;")
        #expect(noGrant.status != 0)
        #expect(noGrant.stderr.contains("alice has no active grant on prod-db"), "\(noGrant)")
        #expect(noGrant.stderr.contains("gatehouse request prod-db --role read"), "\(noGrant)")

        try await harness.grant("alice")
        let wrongToken = try await harness.psql("alice", token: "ghs_not_a_token_at_all", "SELECT 1;")
        #expect(wrongToken.status != 0)
        #expect(wrongToken.stderr.contains("password authentication failed for user \"alice\""), "\(wrongToken)")
        let othersToken = try await harness.psql("alice", token: harness.tokens["bob"], "SELECT 1;")
        #expect(othersToken.stderr.contains("the token belongs to another principal"), "\(othersToken)")

        let reads = try await harness.psql("alice", "SELECT count(*) FROM accounts;\nSELECT sum(balance) FROM accounts WHERE id <= 3;")
        #expect(reads.status == 0, "\(reads)")
        #expect(reads.stdout.split(separator: "\n") == ["10", "300"], "\(reads)")

        let started = try await harness.audit(action: "proxy.session.started")
        #expect(started.count == 1)
        let refused = try await harness.audit(action: "proxy.session.refused")
        #expect(refused.count == 1)
        let ended = try await harness.audit(action: "proxy.session.ended")
        #expect(ended.count == 1)
        #expect((ended.first?["details"] as? [String: String])?["statements"] == "2")
    }

    @Test func aBlockedDeleteLeavesTheSessionUsableAndIsAudited() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let result = try await harness.psql("alice", """
            DELETE FROM accounts;
            UPDATE accounts SET balance = 0 WHERE id = 1;
            SELECT count(*) FROM accounts WHERE balance = 100;
            """)
        #expect(result.stderr.contains("ERROR:  gatehouse: this is a dangerous action (delete_without_where)"), "\(result)")
        #expect(result.stderr.contains("gatehouse request prod-db --sql 'DELETE FROM accounts;'"), "\(result)")
        #expect(result.stderr.contains("this is a write action"), "\(result)")
        #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "10", "\(result)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts WHERE balance = 100") == "10")

        let checks = try await harness.audit(action: "action.checked")
        let refused = checks.compactMap { $0["details"] as? [String: String] }.filter { $0["via"] == "proxy" && $0["decision"] != "allow" }
        #expect(refused.count == 2, "\(checks)")
        #expect(refused.contains { $0["risk"] == "dangerous" && $0["text"] == "DELETE FROM accounts;" })
    }

    /// The guard remembers a statement's classification by its shape (other constants, same tokens);
    /// through psql, statements that differ only in constants are still each judged by what they do.
    @Test func statementsThatDifferOnlyInConstantsAreEachJudged() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice", role: "write")
        let result = try await harness.psql("alice", """
            UPDATE accounts SET balance = 101 WHERE id = 1;
            UPDATE accounts SET balance = 102 WHERE id = 2;
            UPDATE accounts SET balance = 0 WHERE 1 = 1;
            UPDATE accounts SET balance = 0 WHERE 2 = 3;
            DELETE FROM accounts WHERE id::text LIKE 'none%';
            DELETE FROM accounts WHERE id::text LIKE '%';
            SELECT string_agg(balance::text, ',' ORDER BY id) FROM accounts WHERE id <= 3;
            """)
        #expect(result.stderr.components(separatedBy: "this is a dangerous action").count - 1 == 2, "\(result)")
        #expect(result.stderr.contains("update_without_where"), "\(result)")
        #expect(result.stderr.contains("delete_without_where"), "\(result)")
        // Both selective writes ran, the ones whose constants made them select nothing too; nothing else.
        #expect(result.stdout.split(separator: "\n") == ["UPDATE 1", "UPDATE 1", "UPDATE 0", "DELETE 0", "101,102,100"], "\(result)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "10")
    }

    @Test func aBlockedStatementInsideATransactionMakesItFail() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice", role: "write")
        let result = try await harness.psql("alice", """
            BEGIN;
            UPDATE accounts SET balance = 0 WHERE id = 1;
            DELETE FROM accounts;
            SELECT 1;
            COMMIT;
            SELECT balance FROM accounts WHERE id = 1;
            """)
        #expect(result.stderr.contains("gatehouse: this is a dangerous action"), "\(result)")
        #expect(result.stderr.contains("current transaction is aborted"), "\(result)")
        #expect(result.stdout.contains("ROLLBACK") || result.stdout.split(separator: "\n").last == "100", "\(result)")
        #expect(try await harness.direct("SELECT balance FROM accounts WHERE id = 1") == "100", "the update before the refused statement was rolled back")
    }

    @Test func anApprovedDeleteRunsOnceThenIsRefused() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let asked = try await harness.cli(as: "alice", ["request", "prod-db", "--sql", "DELETE FROM accounts", "--reason", "INC-7 wipe the test accounts", "--output", "json"])
        #expect(asked.status == 0 || asked.status == 3, "\(asked)")
        let id = try #require(((try? JSONSerialization.jsonObject(with: Data(asked.stdout.utf8))) as? [String: Any])?["id"] as? String, "\(asked)")
        let approved = try await harness.cli(as: "carol", ["approve", id, "--comment", "ok for INC-7"])
        #expect(approved.status == 0, "\(approved)")

        let first = try await harness.psql("alice", "DELETE FROM accounts;\nDELETE FROM accounts;\n")
        // The first DELETE runs; the second does not: either the guard refuses it, or the session has already
        // been ended because the one-shot grant was used (it could write, and cannot go on with reads only).
        #expect(first.stdout.split(separator: "\n") == ["DELETE 10"], "only the first run deleted: \(first)")
        let refused = first.stderr.components(separatedBy: "gatehouse: this is a dangerous action").count == 2
        let ended = first.stderr.contains("gatehouse: session ended: the grant") && first.stderr.contains("was used by alice")
        #expect(refused || ended, "the second run is refused, or the session ended before it: \(first)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "0")
        let used = try await harness.audit(action: "grant.used")
        #expect(used.count == 1)
    }

    /// A session that started with read grants only is read-only on the database: a one-shot approval given
    /// meanwhile is not spent on a statement the database would refuse; the next session uses it.
    @Test func aReadOnlySessionLeavesAOneShotApprovalUnused() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let text = "DELETE FROM accounts WHERE id = 1"
        let running = try Command.start("/usr/bin/psql", ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=0", harness.conninfo(user: "alice")],
                                        environment: ["PGPASSWORD": harness.tokens["alice"]!],
                                        input: "SELECT 1;\nSELECT pg_sleep(4);\n\(text);\n")
        let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(4)%' AND state = 'active'"
        #expect(try await waitUntil(timeout: .seconds(15), interval: .milliseconds(100)) { try await harness.direct(sleeping) == "1" },
                "the session never started: \(running.output)")
        // Approved while the read-only session sleeps.
        let asked = try await harness.cli(as: "alice", ["request", "prod-db", "--sql", text, "--reason", "INC-7 remove a test account", "--output", "json"])
        let id = try #require(((try? JSONSerialization.jsonObject(with: Data(asked.stdout.utf8))) as? [String: Any])?["id"] as? String, "\(asked)")
        #expect(try await harness.cli(as: "carol", ["approve", id, "--comment", "ok for INC-7"]).status == 0)
        let result = await Command.finish(running)
        #expect(result.stderr.contains("read-only on the database") && result.stderr.contains("left unused"), "\(result)")
        #expect(try await harness.audit(action: "grant.used").isEmpty)
        // A new session starts read-write with the approval, which it uses once.
        let next = try await harness.psql("alice", "\(text);\n")
        #expect(!next.stderr.contains("ERROR"), "\(next)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts WHERE id = 1") == "0")
        #expect(try await harness.audit(action: "grant.used").count == 1)
    }

    @Test func revokingTheGrantEndsTheSession() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        let grant = try await harness.grant("alice")
        let running = try Command.start("/usr/bin/psql", ["-X", "-A", "-t", harness.conninfo(user: "alice")],
                                        environment: ["PGPASSWORD": harness.tokens["alice"]!], input: "SELECT 1;\nSELECT pg_sleep(120);\nSELECT 2;\n")
        // Revoke while the long statement runs on the database.
        let sleeping = try await waitUntil(timeout: .seconds(15), interval: .milliseconds(100)) {
            try await harness.direct("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%' AND state = 'active'") == "1"
        }
        #expect(sleeping, "psql's second statement never started: \(running.output)")
        let revoked = try await harness.cli(token: ProxyHarness.adminToken, ["revoke", grant, "--reason", "INC-9 access no longer needed"])
        #expect(revoked.status == 0, "\(revoked)")
        let result = await Command.finish(running)
        #expect(result.stderr.contains("FATAL:  gatehouse: session ended: the grant \(grant) on prod-db was revoked by admin"), "\(result)")
        #expect(!result.stdout.contains("2"), "nothing ran after the cut: \(result)")
        let ended = try await harness.audit(action: "proxy.session.ended")
        #expect((ended.first?["details"] as? [String: String])?["reason"]?.contains("revoked") == true, "\(ended)")
        // The statement it was running is cancelled on the database, not left to finish.
        let cancelled = try await waitUntil(timeout: .seconds(30), interval: .milliseconds(100)) {
            try await harness.direct("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%' AND state = 'active'") == "0"
        }
        #expect(cancelled)
    }

    /// The database itself ends a statement whose proxy session ended, within a second, its transaction rolled
    /// back: one that catches the cancel (PL/pgSQL) and would write once its grant was revoked, and one whose client
    /// went away (the proxy closes its database connection; the statement would not notice on its own). Neither
    /// can switch the check off.
    @Test func noStatementOutlivesItsSession() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        _ = try await harness.direct("CREATE TABLE late (note text)")
        let write = try await harness.grant("alice", role: "write")
        let stubborn = "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(0.5); EXIT WHEN clock_timestamp() > statement_timestamp() + interval '20 seconds'; "
            + "EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$; INSERT INTO late VALUES ('after the revoke')"
        let running = try Command.start("/usr/bin/psql", ["-X", "-A", "-t", harness.conninfo(user: "alice"), "-c", stubborn],
                                        environment: ["PGPASSWORD": harness.tokens["alice"]!])
        // This test's database only: other tests share the server.
        let active = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'DO $$ BEGIN LOOP%' AND state = 'active'"
        #expect(try await waitUntil(timeout: .seconds(15), interval: .milliseconds(100)) { try await harness.direct(active) == "1" },
                "the block never started: \(running.output)")
        let revoked = try await harness.cli(token: ProxyHarness.adminToken, ["revoke", write, "--reason", "INC-9 access no longer needed"])
        #expect(revoked.status == 0, "\(revoked)")
        _ = await Command.finish(running)
        // Gone from the database long before its 20 s are up, and its INSERT never committed.
        #expect(try await waitUntil(timeout: .seconds(10), interval: .milliseconds(100)) { try await harness.direct(active) == "0" },
                "the statement went on after its session ended")
        #expect(try await harness.direct("SELECT count(*) FROM late") == "0")

        // A client that goes away mid-statement (killed): the statement ends with it.
        try await harness.grant("alice", role: "write")
        let killed = try Command.start("/usr/bin/psql", ["-X", "-A", "-t", harness.conninfo(user: "alice"), "-c",
                                                         "SELECT pg_sleep(60); INSERT INTO late VALUES ('after the client left')"],
                                       environment: ["PGPASSWORD": harness.tokens["alice"]!])
        let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'"
        #expect(try await waitUntil(timeout: .seconds(15), interval: .milliseconds(100)) { try await harness.direct(sleeping) == "1" },
                "the statement never started: \(killed.output)")
        kill(killed.process.processIdentifier, SIGKILL)
        _ = await Command.finish(killed)
        #expect(try await waitUntil(timeout: .seconds(10), interval: .milliseconds(100)) { try await harness.direct(sleeping) == "0" },
                "the statement went on after its client left")
        #expect(try await harness.direct("SELECT count(*) FROM late") == "0")
        // Switching the check off is refused.
        let off = try await harness.psql("alice", "SET client_connection_check_interval = 0;\n")
        #expect(off.stderr.contains("unsafe"), "\(off)")
    }

    @Test func ctrlCCancelsTheRunningStatement() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let running = try Command.start("/usr/bin/psql", ["-X", "-A", "-t", harness.conninfo(user: "alice"), "-c", "SELECT pg_sleep(30)"],
                                        environment: ["PGPASSWORD": harness.tokens["alice"]!], signals: true)
        // Ctrl-C only cancels once the statement runs on the database.
        let sleeping = try await waitUntil(timeout: .seconds(25), interval: .milliseconds(100)) {
            try await harness.direct("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'") == "1"
        }
        #expect(sleeping, "the statement never started on the database: \(running.output)")
        kill(running.process.processIdentifier, SIGINT)
        let result = await Command.finish(running)
        #expect(result.stderr.contains("canceling statement due to user request"), "\(result)")
    }

    @Test func functionCallMessagesAreRefused() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        // libpq's large-object calls use the FunctionCall message.
        let result = try await harness.psql("alice", "\\lo_export 1 /tmp/gatehouse-lo-export\nSELECT 7;\n")
        #expect(result.stderr.contains("Gatehouse refuses FunctionCall messages"), "\(result)")
        #expect(result.stdout.contains("7"), "the session goes on: \(result)")
    }

    @Test func settingsThatChangeHowStatementsAreReadAreRefusedEvenWithADangerousGrant() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice", role: "admin")
        let direct = try await harness.psql("alice", """
            SET standard_conforming_strings = off;
            SET client_encoding = 'SJIS';
            SELECT set_config('backslash_quote', 'on', false);
            SET U&"standard_conforming_string\\0073" TO off;
            SELECT set_config('clie' || 'nt_encoding', 'SJIS', false);
            SET session_replication_role = replica;
            BEGIN READ WRITE;
            SHOW standard_conforming_strings;
            """)
        // BEGIN READ WRITE is a write (read_write), which this grant allows; the six changes of settings are refused.
        #expect(direct.stderr.components(separatedBy: "a change of a setting the guard calls unsafe is refused through the proxy").count == 7, "\(direct)")
        #expect(!direct.stderr.contains("READ WRITE") && direct.stdout.contains("BEGIN"), "\(direct)")
        // Each refusal names what it would change.
        for setting in ["gatehouse: SET client_encoding:", "gatehouse: calls set_config() with a setting named only when it runs:",
                        "gatehouse: set_config('backslash_quote') changes a setting the guard calls unsafe:"] {
            #expect(direct.stderr.contains(setting), "\(setting): \(direct)")
        }
        #expect(direct.stdout.split(separator: "\n").last == "on", "\(direct)")
        // Changed where the classifier cannot see the name: the database reports it, and the session ends.
        let hidden = try await harness.psql("alice", """
            DO $$ BEGIN EXECUTE 'SET standard_' || 'conforming_strings = off'; END $$;
            SELECT 'still here';
            """)
        #expect(hidden.stderr.contains("FATAL:  gatehouse: session ended: the database reports standard_conforming_strings = off"), "\(hidden)")
        #expect(!hidden.stdout.contains("still here"), "\(hidden)")
    }

    @Test func aReadOnlySessionCannotWriteThroughAFunction() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        // A read session does not look inside functions (`SELECT bump()` reads as a read): the database refuses the write.
        _ = try await harness.direct("CREATE FUNCTION bump() RETURNS int LANGUAGE sql AS $$ UPDATE accounts SET balance = balance + 1 WHERE id = 1 RETURNING 1 $$")
        try await harness.grant("alice")
        let reader = try await harness.psql("alice", """
            SELECT bump();
            SET default_transaction_read_only = off;
            BEGIN READ WRITE;
            SHOW default_transaction_read_only;
            """)
        #expect(reader.stderr.contains("read-only transaction"), "\(reader)")
        #expect(reader.stderr.components(separatedBy: "gatehouse:").count == 3, "both switches are refused: \(reader)")
        #expect(reader.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "on", "\(reader)")
        #expect(try await harness.direct("SELECT sum(balance) FROM accounts") == "1000")
        // With a write grant, a new session is not read-only.
        try await harness.grant("alice", role: "write")
        let writer = try await harness.psql("alice", "SELECT bump();\n")
        #expect(writer.status == 0 && !writer.stderr.contains("ERROR"), "\(writer)")
        #expect(try await harness.direct("SELECT sum(balance) FROM accounts") == "1001")
    }

    @Test func aSessionThatCouldWriteEndsWhenItsWriteGrantEnds() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        _ = try await harness.direct("CREATE FUNCTION bump() RETURNS int LANGUAGE sql AS $$ UPDATE accounts SET balance = balance + 1 WHERE id = 1 RETURNING 1 $$")
        try await harness.grant("alice")
        let write = try await harness.grant("alice", role: "write")
        let running = try Command.start("/usr/bin/psql", ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=0", harness.conninfo(user: "alice")],
                                        environment: ["PGPASSWORD": harness.tokens["alice"]!],
                                        input: "SELECT bump();\nSELECT pg_sleep(120);\nSELECT bump();\n")
        let sleeping = try await waitUntil(timeout: .seconds(15), interval: .milliseconds(100)) {
            try await harness.direct("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%' AND state = 'active'") == "1"
        }
        #expect(sleeping, "psql's second statement never started: \(running.output)")
        // The read grant is still there; the write grant is released.
        let released = try await harness.cli(as: "alice", ["release", write])
        #expect(released.status == 0, "\(released)")
        let result = await Command.finish(running)
        #expect(result.stderr.contains("FATAL:  gatehouse: session ended: the grant \(write) on prod-db was released"), "\(result)")
        #expect(result.stderr.contains("reconnect for a read-only session"), "\(result)")
        #expect(try await harness.direct("SELECT sum(balance) FROM accounts") == "1001", "only the first bump() ran")
        let ended = try await harness.audit(action: "proxy.session.ended")
        #expect(ended.contains { (($0["details"] as? [String: String])?["reason"] ?? "").contains("reconnect for a read-only session") }, "\(ended)")
        // The next session, on the read grant alone, is read-only on the database.
        let reader = try await harness.psql("alice", "SELECT bump();\n")
        #expect(reader.stderr.contains("read-only transaction"), "\(reader)")
        #expect(try await harness.direct("SELECT sum(balance) FROM accounts") == "1001")
    }

    /// A session that may write judges `SELECT f()` by what `f` does, read from the database's
    /// catalog: a body that updates one row by key runs, one that deletes every row (directly,
    /// through another function, or called as a field of a row) is refused and names the function; a function redefined is
    /// judged by its new body; a catalog that cannot be read refuses the call (fail closed).
    @Test func aWriteSessionJudgesFunctionCallsByTheirBodies() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        _ = try await harness.direct("""
            CREATE FUNCTION touch_one(k int) RETURNS int LANGUAGE sql AS $$ UPDATE accounts SET balance = balance + 1 WHERE id = k RETURNING 1 $$;
            CREATE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM accounts; END $$;
            CREATE SCHEMA ops;
            CREATE FUNCTION ops.tidy() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN PERFORM public.purge(); END $$;
            CREATE FUNCTION wipe(accounts) RETURNS int LANGUAGE sql AS $$ DELETE FROM accounts RETURNING 1 $$;
            CREATE FUNCTION sweep(a accounts, n int DEFAULT 0) RETURNS int LANGUAGE sql AS $$ DELETE FROM accounts RETURNING 1 $$;
            CREATE PROCEDURE empty_all() LANGUAGE sql AS $$ DELETE FROM accounts $$;
            CREATE FUNCTION "Reset"() RETURNS void LANGUAGE sql AS $$ UPDATE accounts SET balance = 0 $$;
            CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM accounts; RETURN NEW; END $$;
            """)
        try await harness.grant("alice", role: "write")
        let first = try await harness.psql("alice", """
            SELECT touch_one(1);
            SELECT purge();
            SELECT ops.tidy();
            SELECT a.wipe FROM accounts a WHERE a.id = 2;
            SELECT a.sweep FROM accounts a WHERE a.id = 2;
            CALL empty_all();
            SELECT "Reset"();
            CREATE TRIGGER stamp BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION stamp();
            SELECT count(*) FROM accounts;

            """)
        #expect(first.stdout.components(separatedBy: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } == ["1", "10"], "\(first)")
        #expect(first.stderr.contains("ERROR:  gatehouse: this is a dangerous action (delete_without_where) and alice has no active grant that allows it: it calls public.purge(), whose body: DELETE on accounts without WHERE changes every row"), "\(first)")
        #expect(first.stderr.contains("it calls ops.tidy() (SECURITY DEFINER) → public.purge(), whose body: DELETE on accounts"), "\(first)")
        // Attribute notation: `a.wipe` calls wipe(a). A procedure; a quoted name; a trigger bound to a function.
        #expect(first.stderr.contains("it calls public.wipe(public.accounts), whose body: DELETE on accounts without WHERE"), "\(first)")
        // ... also with a second argument PostgreSQL fills from its default.
        #expect(first.stderr.contains("it calls public.sweep(a public.accounts, n integer), whose body: DELETE on accounts without WHERE"), "\(first)")
        #expect(first.stderr.contains("it calls public.empty_all(), whose body: DELETE on accounts without WHERE"), "\(first)")
        #expect(first.stderr.contains("(update_without_where) and alice has no active grant that allows it: it calls public.Reset(), whose body: UPDATE on accounts"), "\(first)")
        #expect(first.stderr.contains("it calls public.stamp(), whose body: DELETE on accounts without WHERE"), "\(first)")
        #expect(try await harness.direct("SELECT count(*) FROM pg_trigger WHERE tgname = 'stamp'") == "0")
        #expect(try await harness.direct("SELECT count(*) || ' ' || sum(balance) FROM accounts") == "10 1001")

        // Redefined to delete every row: the next call is judged by the new body.
        _ = try await harness.direct("CREATE OR REPLACE FUNCTION touch_one(k int) RETURNS int LANGUAGE sql AS $$ DELETE FROM accounts RETURNING 1 $$")
        let redefined = try await harness.psql("alice", "SELECT touch_one(1);\n")
        #expect(redefined.stderr.contains("it calls public.touch_one(k integer), whose body: DELETE on accounts without WHERE"), "\(redefined)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "10")
        let checked = try await harness.audit(action: "action.checked").compactMap { $0["details"] as? [String: String] }
        #expect(checked.contains { $0["text"] == "SELECT touch_one(1);" && $0["decision"] == "approval_required" && $0["categories"] == "delete_without_where" }, "\(checked)")

        // The catalog cannot be read (pg_language locked by another transaction): the call is refused, not let through.
        let holder = try Command.start("/usr/bin/psql", ["-X", "-v", "ON_ERROR_STOP=1", ProxyHarness.directURL(harness.server, harness.database)],
                                       input: "BEGIN;\nLOCK TABLE pg_catalog.pg_language IN ACCESS EXCLUSIVE MODE;\nSELECT pg_sleep(60);\n")
        let locked = try await waitUntil(timeout: .seconds(20), interval: .milliseconds(100)) {
            try await harness.direct("SELECT count(*) FROM pg_locks WHERE relation = 'pg_catalog.pg_language'::regclass AND mode = 'AccessExclusiveLock' AND granted") == "1"
        }
        #expect(locked, "the lock was never taken: \(holder.output)")
        let blind = try await harness.psql("alice", "SELECT touch_one(1);\n")
        _ = try await harness.direct("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE relation = 'pg_catalog.pg_language'::regclass AND mode = 'AccessExclusiveLock'")
        _ = await Command.finish(holder)
        #expect(blind.stderr.contains("ERROR:  gatehouse: cannot read the definition of touch_one() from the database's catalog"), "\(blind)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "10")
        // Once the catalog answers again, calls are judged again.
        let again = try await harness.psql("alice", "SELECT count(*) FROM accounts;\nSELECT touch_one(1);\n")
        #expect(again.stdout.contains("10") && again.stderr.contains("whose body: DELETE on accounts"), "\(again)")
    }

    @Test func auditAllRecordsEveryStatementAndMetricsCountThem() async throws {
        let harness = try await ProxyHarness.start(proxyExtra: "audit: all")
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let result = try await harness.psql("alice", "SELECT 1;\nSELECT count(*) FROM accounts;\nDELETE FROM accounts;\n")
        #expect(result.stdout.contains("10"), "\(result)")
        let checks = try await harness.audit(action: "action.checked").compactMap { $0["details"] as? [String: String] }
        #expect(checks.filter { $0["decision"] == "allow" && $0["via"] == "proxy" }.map { $0["text"] ?? "" }.sorted()
                == ["SELECT 1;", "SELECT count(*) FROM accounts;"], "\(checks)")
        #expect(checks.contains { $0["decision"] != "allow" && $0["text"] == "DELETE FROM accounts;" })
        let metrics = try await Command.run("/usr/bin/curl", ["-fsS", "http://127.0.0.1:\(harness.httpPort)/metrics"])
        #expect(metrics.stdout.contains(#"gatehouse_proxy_statements_total{outcome="allowed"} 2"#), "\(metrics.stdout)")
        #expect(metrics.stdout.contains(#"gatehouse_proxy_statements_total{outcome="refused"} 1"#), "\(metrics.stdout)")
        #expect(metrics.stdout.contains(#"gatehouse_proxy_sessions_total{outcome="started"} 1"#), "\(metrics.stdout)")
        #expect(metrics.stdout.contains("gatehouse_proxy_check_seconds_count 3"), "\(metrics.stdout)")
        // An empty query runs nothing, and PostgreSQL answers it: drivers send one to ask whether a
        // connection still works (pgjdbc's isValid, which connection pools call).
        let empty = """
            import sys, psycopg
            with psycopg.connect(sys.argv[1], password=sys.argv[2], autocommit=True) as conn:
                for prepare in (False, True):
                    cur = conn.execute("", prepare=prepare)
                    print(cur.pgresult.status == psycopg.pq.ExecStatus.EMPTY_QUERY)
            """
        let pinged = try await Command.run("/usr/bin/python3", ["-c", empty, harness.conninfo(user: "alice"), harness.tokens["alice"]!])
        #expect(pinged.status == 0 && pinged.stdout == "True\nTrue\n", "\(pinged)")
    }

    /// SIGTERM while a statement runs: the client is told why its session ends (FATAL 57P01, as
    /// PostgreSQL's own shutdown says it), not left with a connection that just dropped.
    @Test func aStoppingProxyTellsItsSessions() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let running = try Command.start("/usr/bin/psql", ["-X", "-A", "-t", "-c", "SELECT pg_sleep(120)", harness.conninfo(user: "alice")],
                                        environment: ["PGPASSWORD": harness.tokens["alice"]!])
        let sleeping = await waitUntil(timeout: .seconds(20)) {
            (try? await harness.direct("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120)'")) == "1"
        }
        #expect(sleeping)
        // A connection still signing in (its SSLRequest answered, no StartupMessage yet) is told too.
        let ready = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-signing-in-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: ready) }
        let signingIn = try Command.start("/usr/bin/python3", ["-c", """
            import socket, struct, sys
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            s.settimeout(60)
            s.sendall(struct.pack("!ii", 8, 80877103))
            answer = s.recv(1)
            open(sys.argv[2], "w").write(answer.decode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk: break
                data += chunk
            print(data[:1].decode(), data[5:].decode(errors="replace"))
            """, "\(harness.proxyPort)", ready])
        let answered = await waitUntil(timeout: .seconds(20)) { FileManager.default.fileExists(atPath: ready) }
        #expect(answered)
        harness.process.signal(SIGTERM)
        let ended = await waitUntil(timeout: .seconds(30)) { !running.isRunning && !signingIn.isRunning }
        if !ended {
            running.signal(SIGKILL, wait: true)
            signingIn.signal(SIGKILL, wait: true)
        }
        let result = await Command.finish(running)
        #expect(ended && result.status != 0 && result.stderr.contains("FATAL:  gatehouse: the proxy is shutting down"), "\(result)")
        let told = await Command.finish(signingIn)
        #expect(told.stdout.hasPrefix("E ") && told.stdout.contains("57P01") && told.stdout.contains("the proxy is shutting down"), "\(told)")
    }

    @Test func copyRunsAsTheClassifierAllows() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let out = try await harness.psql("alice", "\\copy (SELECT id FROM accounts WHERE id <= 3 ORDER BY id) TO STDOUT\n")
        #expect(out.stdout.split(separator: "\n") == ["1", "2", "3"], "\(out)")
        let into = try await harness.psql("alice", "\\copy accounts FROM STDIN\n11\t5\n\\.\n")
        #expect(into.stderr.contains("this is a write action"), "a read grant does not cover COPY FROM: \(into)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "10")
        try await harness.grant("alice", role: "write")
        let written = try await harness.psql("alice", "\\copy accounts FROM STDIN\n11\t5\n12\t6\n\\.\n")
        #expect(written.status == 0, "\(written)")
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "12")
        let program = try await harness.psql("alice", "COPY accounts TO PROGRAM 'cat > /dev/null';\n")
        #expect(program.stderr.contains("gatehouse:"), "\(program)")
    }

    @Test func preparedStatementsThroughPsycopg() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let script = """
            import json, sys, psycopg
            out = {}
            with psycopg.connect(sys.argv[1], password=sys.argv[2]) as conn:
                cur = conn.cursor()
                out["reads"] = [cur.execute("SELECT balance FROM accounts WHERE id = %s", (i,), prepare=True).fetchone()[0] for i in range(1, 8)]
                try:
                    cur.execute("DELETE FROM accounts WHERE balance > %s OR true", (0,), prepare=True)
                    out["delete"] = "ran"
                except psycopg.Error as e:
                    out["delete"] = e.sqlstate + " " + str(e).splitlines()[0]
                conn.rollback()
                out["after"] = cur.execute("SELECT count(*) FROM accounts WHERE id > %s", (5,), prepare=True).fetchone()[0]
                out["pipeline"] = []
                with conn.pipeline():
                    a = conn.execute("SELECT %s::int", (1,), prepare=True)
                    b = conn.execute("SELECT %s::int", (2,))
                out["pipeline"] = [a.fetchone()[0], b.fetchone()[0]]
            print(json.dumps(out))
            """
        let result = try await Command.run("/usr/bin/python3", ["-c", script, harness.conninfo(user: "alice"), harness.tokens["alice"]!])
        #expect(result.status == 0, "\(result)")
        let out = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result)")
        #expect(out["reads"] as? [Int] == [100, 100, 100, 100, 100, 100, 100])
        #expect((out["delete"] as? String)?.hasPrefix("42501 gatehouse:") == true, "\(out)")
        #expect(out["after"] as? Int == 5)
        #expect(out["pipeline"] as? [Int] == [1, 2])
        #expect(try await harness.direct("SELECT count(*) FROM accounts") == "10")
    }

    /// Caps: sessions per principal (a third session of alice is refused with SQLSTATE 53300 and
    /// audited; closing one frees its place) and connections per client address (the fourth open
    /// connection gets one FATAL 53300 and is closed, before anything is read).
    @Test func sessionsPerPrincipalAndConnectionsPerAddressAreCapped() async throws {
        let harness = try await ProxyHarness.start(proxyExtra: "max_sessions_per_principal: 2\nmax_connections_per_address: 3")
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let script = """
            import asyncio, json, socket, struct, sys, time, asyncpg
            async def main():
                out = {}
                a = await asyncpg.connect(sys.argv[1], password=sys.argv[2])
                b = await asyncpg.connect(sys.argv[1], password=sys.argv[2])
                try:
                    await asyncpg.connect(sys.argv[1], password=sys.argv[2])
                    out["third"] = "connected"
                except asyncpg.PostgresError as e:
                    out["third"] = e.sqlstate + " " + str(e)
                await b.close()
                # The proxy frees b's place when it sees the close; under load that can take a moment.
                deadline = time.monotonic() + 20
                while True:
                    try:
                        c = await asyncpg.connect(sys.argv[1], password=sys.argv[2])
                        break
                    except asyncpg.PostgresError:
                        if time.monotonic() > deadline: raise
                        await asyncio.sleep(0.2)
                out["after_close"] = await c.fetchval("SELECT 1")
                # a and c hold two connections: one more raw connection is the third, the next is over the cap
                # (tried again while the proxy has not yet counted b's connection as closed).
                port = int(sys.argv[3])
                while True:
                    raw = socket.create_connection(("127.0.0.1", port))
                    over = socket.create_connection(("127.0.0.1", port))
                    over.settimeout(10)
                    # Answered as PostgreSQL answers: "N" to an SSLRequest, then the FATAL after the StartupMessage.
                    over.sendall(struct.pack("!ii", 8, 80877103))
                    out["ssl_answer"] = over.recv(1).decode()
                    startup = b"user\\x00alice\\x00database\\x00prod-db\\x00\\x00"
                    over.sendall(struct.pack("!ii", 8 + len(startup), 196608) + startup)
                    data = over.recv(4096)
                    if data[:1] == b"E" or time.monotonic() > deadline: break
                    raw.close(); over.close()
                    await asyncio.sleep(0.2)
                out["over_cap"] = data[:1].decode() + " " + data[5:].decode(errors="replace")
                out["over_closed"] = over.recv(4096) == b""
                # Over the cap and silent: closed within seconds, not held open (each holds a descriptor).
                silent = socket.create_connection(("127.0.0.1", port))
                silent.settimeout(30)
                started = time.monotonic()
                try:
                    out["silent_closed"] = silent.recv(4096) == b""
                except socket.timeout:
                    out["silent_closed"] = False
                out["silent_seconds"] = time.monotonic() - started
                silent.close()
                raw.close(); over.close()
                await a.close(); await c.close()
                print(json.dumps(out))
            asyncio.run(main())
            """
        let result = try await Command.run("/usr/bin/python3", ["-c", script, harness.url(user: "alice"), harness.tokens["alice"]!, "\(harness.proxyPort)"])
        #expect(result.status == 0, "\(result)")
        let out = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result)")
        let third = out["third"] as? String ?? ""
        #expect(third.hasPrefix("53300") && third.contains("already holds 2 sessions"), "\(out)")
        #expect(out["after_close"] as? Int == 1)
        let overCap = out["over_cap"] as? String ?? ""
        #expect(overCap.hasPrefix("E") && overCap.contains("53300") && overCap.contains("too many connections"), "\(out)")
        #expect(out["over_closed"] as? Bool == true)
        #expect(out["silent_closed"] as? Bool == true && (out["silent_seconds"] as? Double ?? 99) < 20, "\(out)")
        #expect(out["ssl_answer"] as? String == "N")
        let refused = try await harness.audit(action: "proxy.session.refused")
        #expect(refused.contains { (($0["details"] as? [String: String])?["reason"] ?? "").contains("already holds 2 sessions") }, "\(refused)")
        // Connections over the address cap are counted (the one answered, the silent one), apart from refused sign-ins.
        let metrics = try await Command.run("/usr/bin/curl", ["-fsS", "http://127.0.0.1:\(harness.httpPort)/metrics"])
        let overCapCount = metrics.stdout.split(separator: "\n").first { $0.hasPrefix(#"gatehouse_proxy_sessions_total{outcome="over_address_cap"} "#) }
            .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        #expect(overCapCount >= 2, "\(metrics.stdout)")
    }
}
