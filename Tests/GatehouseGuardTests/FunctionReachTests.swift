import Foundation
import GatehouseCore
import Testing
@testable import GatehouseGuard

/// A catalog held in memory, as `pg_get_functiondef` would give the definitions: the proxy's real
/// catalog connection is exercised against PostgreSQL in the proxy tests.
private final class Catalog: FunctionCatalog, @unchecked Sendable {
    private let lock = NSLock()
    private var functions: [FunctionDefinition] = []
    private(set) var lookups: [[String]] = []
    var failure: String?

    func add(_ oid: Int64, _ schema: String, _ name: String, arguments: String = "", language: String = "plpgsql", definer: Bool = false,
             version: String = "1", body: String?) {
        lock.lock()
        defer { lock.unlock() }
        let definition = body.map { body in
            language == "sql"
                ? "CREATE OR REPLACE FUNCTION \(schema).\(name)()\n RETURNS integer\n LANGUAGE sql\nAS $function$\(body)$function$\n"
                : "CREATE OR REPLACE FUNCTION \(schema).\(name)()\n RETURNS void\n LANGUAGE plpgsql\nAS $function$\nBEGIN\n\(body)\nEND\n$function$\n"
        }
        functions.removeAll { $0.oid == oid }
        functions.append(FunctionDefinition(oid: oid, version: version, schema: schema, name: name, arguments: arguments, language: language,
                                            securityDefiner: definer, definition: definition))
    }

    func functions(named calls: [FunctionCallSite]) async throws -> [FunctionDefinition] {
        try lookup(calls)
    }

    private func lookup(_ calls: [FunctionCallSite]) throws -> [FunctionDefinition] {
        lock.lock()
        defer { lock.unlock() }
        if let failure { throw CatalogFailure(message: failure) }
        lookups.append(calls.map(\.qualifiedName).sorted())
        return functions.filter { function in calls.contains { $0.reaches(function) } }
    }
}

private struct CatalogFailure: Error { var message: String }

private func judge(_ sql: String, _ catalog: Catalog) async throws -> ActionClassification {
    let reach = FunctionReach(catalog: catalog, actionGuard: ActionGuard())
    return try await reach.judge(await classify(sql), settings: GuardSettings())
}

@Suite("Functions judged by their bodies")
struct FunctionReachTests {
    @Test("a statement lists the functions it calls by name, once each, but not those qualified with pg_catalog")
    func callsAreListed() async {
        let sql = "SELECT archive_old(), count(*), pg_catalog.now(), app.f(1), archive_old() FROM t WHERE x = lower('A')"
        let result = await classify(sql)
        #expect(result.calls.map(\.qualifiedName) == ["archive_old", "count", "app.f", "lower"])
        #expect(result.calls.first?.position == 7)
        let procedure = await classify("SELECT 1; CALL maintenance.rotate()")
        #expect(procedure.calls.map(\.qualifiedName) == ["maintenance.rotate"])
        #expect(procedure.calls.first?.statement == 2)
        // Objects that will call a function later are judged by it now: triggers, operators, casts, aggregates.
        let bound = await classify("""
            CREATE TRIGGER t BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION ops.stamp();
            CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int_same);
            CREATE CAST (text AS orders) WITH FUNCTION to_order(text);
            CREATE AGGREGATE tally(int) (SFUNC = tally_step, STYPE = int, FINALFUNC = public.tally_end)
            """)
        #expect(bound.calls.map(\.qualifiedName) == ["ops.stamp", "int_same", "to_order", "tally_step", "public.tally_end"])
    }

    @Test("a definition is read for what calling it does: its body's findings and calls, not the CREATE itself")
    func definitionsClassifyTheirBodies() {
        let classifier = SQLClassifier()
        let plpgsql = classifier.classifyDefinition("CREATE OR REPLACE FUNCTION public.purge()\n RETURNS void\n LANGUAGE plpgsql\nAS $function$\nBEGIN\n  DELETE FROM accounts;\n  PERFORM audit.note('purged');\nEND\n$function$\n")
        #expect(plpgsql.categories == ["delete_without_where"])
        #expect(plpgsql.calls.map(\.qualifiedName) == ["audit.note"])
        let sql = classifier.classifyDefinition("CREATE OR REPLACE FUNCTION public.touch(k integer)\n RETURNS integer\n LANGUAGE sql\nAS $function$ UPDATE accounts SET balance = balance + 1 WHERE id = k RETURNING 1 $function$\n")
        #expect(sql.categories == ["write_data"])
        #expect(sql.risk == .write)
        // Read as an ordinary statement, creating it is a schema change.
        #expect(classifier.classify("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$").categories == ["schema_change"])
    }

    @Test("a call is judged by the body it reaches, through functions that call functions, with the chain in the finding")
    func bodiesCount() async throws {
        let catalog = Catalog()
        catalog.add(1, "public", "purge", body: "DELETE FROM accounts;")
        catalog.add(2, "public", "touch", language: "sql", body: " UPDATE accounts SET balance = 1 WHERE id = 4 RETURNING 1 ")
        catalog.add(3, "ops", "tidy", definer: true, body: "PERFORM public.purge();")
        catalog.add(4, "public", "tidy", body: "RETURN;")

        let touch = try await judge("SELECT touch()", catalog)
        #expect(touch.risk == .write)
        #expect(touch.findings.map(\.category) == ["write_data"])
        #expect(touch.findings.first?.detail.hasPrefix("calls public.touch(), whose body: UPDATE on accounts") == true, "\(touch.findings)")

        let purge = try await judge("SELECT 1; SELECT purge()", catalog)
        #expect(purge.risk == .dangerous)
        let finding = try #require(purge.findings.first { $0.category == "delete_without_where" })
        #expect(finding.statement == 2 && finding.position == 17)

        // A qualified call reaches only its schema; the SECURITY DEFINER function's body calls purge().
        let tidy = try await judge("SELECT ops.tidy()", catalog)
        #expect(tidy.risk == .dangerous)
        #expect(tidy.findings.map(\.detail) == ["calls ops.tidy() (SECURITY DEFINER) → public.purge(), whose body: DELETE on accounts without WHERE changes every row"])
        // A bare name reaches every schema's function of that name, whatever the search_path.
        #expect(try await judge("SELECT tidy()", catalog).risk == .dangerous)
    }

    @Test("a function of a row called as its field (`t.f`, `(row).f`) is followed, also one with more arguments (their defaults fill them); one without arguments is not")
    func attributeNotation() async throws {
        let sites = await classify("SELECT a.purge, (a).wipe, a.* FROM accounts a").calls
        #expect(sites.filter(\.attributeNotation).map(\.name) == ["purge", "wipe"])
        let catalog = Catalog()
        catalog.add(1, "public", "purge", arguments: "accounts", body: "DELETE FROM accounts;")
        // Identity arguments do not show defaults: `wipe(o accounts, n integer DEFAULT 0)` reads as this.
        catalog.add(2, "public", "wipe", arguments: "o accounts, n integer", body: "DELETE FROM accounts;")
        catalog.add(3, "public", "balance", body: "DELETE FROM accounts;")
        let judged = try await judge("SELECT a.purge, (a).wipe, a.balance FROM accounts a", catalog)
        #expect(judged.findings.map(\.detail) == ["calls public.purge(accounts), whose body: DELETE on accounts without WHERE changes every row",
                                                  "calls public.wipe(o accounts, n integer), whose body: DELETE on accounts without WHERE changes every row"])
    }

    @Test("what the body does is remembered per function until its catalog row changes")
    func definitionChanges() async throws {
        let catalog = Catalog()
        catalog.add(7, "public", "touch", language: "sql", body: " UPDATE accounts SET balance = 1 WHERE id = 4 RETURNING 1 ")
        let reach = FunctionReach(catalog: catalog, actionGuard: ActionGuard())
        let statement = await classify("SELECT touch()")
        #expect(try await reach.judge(statement, settings: GuardSettings()).risk == .write)
        catalog.add(7, "public", "touch", language: "sql", version: "2", body: " DELETE FROM accounts RETURNING 1 ")
        #expect(try await reach.judge(statement, settings: GuardSettings()).risk == .dangerous)
        // Every judgement asks the catalog (that is how a change is noticed).
        #expect(catalog.lookups.count == 2)
        // The policy's guard settings apply to bodies too.
        var relaxed = GuardSettings()
        relaxed.sqlLevels["delete_without_where"] = .write
        #expect(try await reach.judge(statement, settings: relaxed).risk == .write)
    }

    @Test("bodies the guard cannot read add nothing; recursion ends; chains deeper than the limit fail closed")
    func limits() async throws {
        let catalog = Catalog()
        catalog.add(1, "public", "native", language: "c", body: nil)
        catalog.add(2, "public", "loop", body: "PERFORM loop();")
        for level in 0...FunctionReach.maximumDepth {
            catalog.add(Int64(10 + level), "public", "f\(level)", body: "PERFORM f\(level + 1)();")
        }
        #expect(try await judge("SELECT native()", catalog).findings.isEmpty)
        #expect(try await judge("SELECT loop()", catalog).findings.isEmpty)
        let deep = try await judge("SELECT f0()", catalog)
        #expect(deep.risk == .dangerous)
        #expect(deep.findings.map(\.category) == ["too_complex"])
        #expect(deep.findings.first?.detail.contains("public.f0() → public.f1()") == true)
        // Nothing is looked up for a statement that calls nothing.
        let before = catalog.lookups.count
        #expect(try await judge("SELECT * FROM accounts", catalog).findings.isEmpty)
        #expect(catalog.lookups.count == before)
    }

    @Test("a catalog that cannot be read is an error, not an answer")
    func catalogFailure() async {
        let catalog = Catalog()
        catalog.failure = "the database did not answer"
        await #expect(throws: CatalogFailure.self) { try await judge("SELECT purge()", catalog) }
    }
}
