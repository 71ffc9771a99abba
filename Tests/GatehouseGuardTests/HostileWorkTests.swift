import GatehouseCore
import Testing
@testable import GatehouseGuard

/// Statements built to make judging them take far longer than parsing them: each pattern once took
/// seconds to minutes per kilobyte. These tests finish (and say what the statement is) only while the
/// work stays bounded; the step budget makes what it cannot judge in time `too_complex`.
@Suite("SQL classifier: hostile statements are judged in bounded work")
struct HostileWorkTests {
    /// `1=2 OR(1=2 OR(... a=1 ...))`, `depth` levels.
    static func orNest(_ depth: Int, inner: String = "a=1") -> String {
        (0..<depth).reduce(inner) { text, _ in "1=2 OR(\(text))" }
    }

    @Test("a nest of ORs beside a hundred copies of the changed table, in 1 KB, is judged (it took minutes)")
    func copiesAndNest() async {
        let sql = "DELETE FROM t u USING " + Array(repeating: "t", count: 124).joined(separator: ",") + " WHERE " + Self.orNest(93)
        #expect(sql.utf8.count <= 1024)
        let result = await classify(sql)
        #expect(result.findings.map(\.category) == ["write_data"], "\(result.findings)")
    }

    @Test("a subquery's long chain of joins is read once, not once per join")
    func joinChain() async {
        let subquery = "EXISTS(SELECT FROM t" + String(repeating: " CROSS JOIN t", count: 1200) + ")"
        let result = await classify("DELETE FROM t u USING t WHERE (\(subquery) AND 1=2) OR a=1")
        #expect(result.findings.map(\.category) == ["write_data"], "\(result.findings)")
    }

    @Test("conditions nested too deep to judge within the budget are too complex: dangerous, not the write they look like")
    func budgetSpent() async {
        let deep = await classify("DELETE FROM users WHERE " + Self.orNest(640))
        #expect(deep.risk == .dangerous)
        #expect(deep.findings.contains { $0.category == "too_complex" && $0.detail.contains("steps to judge") }, "\(deep.findings)")
        // The same statement less deep is judged as what it is.
        let shallow = await classify("DELETE FROM users WHERE " + Self.orNest(40))
        #expect(shallow.findings.map(\.category) == ["write_data"], "\(shallow.findings)")
    }

    @Test("an AND of many null tests and comparisons, and an OR of many IS NULL and IS NOT NULL, stay within the budget or are too complex")
    func wideConditions() async {
        let parts = Array(repeating: "x.c NOTNULL", count: 2000) + (0..<2000).map { "x.d\($0) = u.d\($0)" } + ["x.c = u.c"]
        let wide = await classify("DELETE FROM t u USING t x WHERE " + parts.joined(separator: " AND "))
        #expect(wide.risk == .dangerous, "\(wide.findings)")
        let tests = (0..<4000).map { $0.isMultiple(of: 2) ? "c\($0) ISNULL" : "c\($0) NOTNULL" }
        let covered = await classify("DELETE FROM t WHERE " + tests.joined(separator: " OR "))
        #expect(covered.risk == .dangerous, "\(covered.findings)")
        // A few: judged, not given up on (c1 IS NULL OR c1 IS NOT NULL is every row; c0/c1 are not).
        let few = await classify("DELETE FROM t WHERE c0 ISNULL OR c1 NOTNULL OR c2 ISNULL")
        #expect(few.findings.map(\.category) == ["write_data"], "\(few.findings)")
        let every = await classify("DELETE FROM t WHERE c0 ISNULL OR c1 NOTNULL OR c0 NOTNULL")
        #expect(every.findings.map(\.category) == ["delete_without_where"], "\(every.findings)")
    }

    @Test("many findings are each kept once")
    func manyFindings() async {
        let result = await classify("SELECT " + Array(repeating: "dblink()", count: 5000).joined(separator: ","))
        #expect(!result.findings.isEmpty)
        let keys = result.findings.map { "\($0.category)|\($0.statement)|\($0.position)|\($0.detail)" }
        #expect(Set(keys).count == keys.count)
        #expect(result.findings.count == 5000)
    }

    @Test("the dollar-quote tag chosen for a body avoids every tag the text holds, found in one pass")
    func dollarTags() {
        #expect(PgQuery.dollarTag(avoiding: "SELECT 1") == "$gh$")
        #expect(PgQuery.dollarTag(avoiding: "$gh$") == "$gh1$")
        #expect(PgQuery.dollarTag(avoiding: "$gh$ $gh1$ $gh3$") == "$gh2$")
        #expect(PgQuery.dollarTag(avoiding: "$gh$gh1$") == "$gh2$")
        #expect(PgQuery.dollarTag(avoiding: "$gh$ $gh01$ $gh12$ $gh1") == "$gh1$")
        let many = "/* " + (["$gh$"] + (1..<14000).reversed().map { "$gh\($0)$" }).joined(separator: " ") + " */"
        let tag = PgQuery.dollarTag(avoiding: many)
        #expect(tag == "$gh14000$")
        #expect(!many.contains(tag))
    }

    @Test("a body of many FETCH, MOVE, FOR or OPEN statements is rewritten in one pass")
    func cursorStatements() async {
        // Each FETCH looked ahead to the statement's end and judged every word on the way (51 s in a release build).
        let fetches = await classify("DO $$DECLARE c refcursor; BEGIN " + String(repeating: "else fetch ", count: 11000) + "c; END$$")
        #expect(fetches.risk == .dangerous, "\(fetches.findings.prefix(3))")
        let opens = await classify("DO $$DECLARE c refcursor; BEGIN " + String(repeating: "open c(", count: 8000) + " END$$")
        #expect(opens.risk == .dangerous, "\(opens.findings.prefix(3))")
        // The rewrite still does what it did: a FETCH of a declared cursor reads, a bound cursor's arguments are kept.
        let fetch = await classify("DO $$DECLARE c CURSOR FOR SELECT 1; r record; BEGIN OPEN c; FETCH NEXT FROM c INTO r; CLOSE c; END$$")
        #expect(fetch.risk == .read, "\(fetch.findings)")
        let loop = await classify("DO $$DECLARE c CURSOR (k int) FOR SELECT k; r record; BEGIN FOR r IN c(pg_terminate_backend(1)) LOOP NULL; END LOOP; END$$")
        #expect(loop.findings.map(\.category) == ["terminate_session"], "\(loop.findings)")
        let plain = await classify("DO $$DECLARE c CURSOR (k int) FOR SELECT k; r record; BEGIN FOR r IN c(1) LOOP NULL; END LOOP; END$$")
        #expect(plain.risk == .read, "\(plain.findings)")
    }

    @Test("a body of many FOR statements is rewritten in one pass per statement")
    func forStatements() async {
        let result = await classify("DO $$BEGIN " + String(repeating: "for;", count: 25000) + " END$$")
        #expect(result.risk == .dangerous, "\(result.findings.prefix(3))")
    }
}
