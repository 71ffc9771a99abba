import GatehouseCore
import Testing
@testable import GatehouseGuard

func classify(_ sql: String, settings: GuardSettings = GuardSettings(), normalize: Bool = false) async -> ActionClassification {
    await ActionGuard().classify(Action(kind: .sql, text: sql), settings: settings, normalize: normalize)
}

@Suite("SQL classifier")
struct SQLClassifierTests {
    @Test("the highest risk of several statements wins, and each finding names its statement and byte")
    func positions() async {
        let sql = "SELECT 1; DELETE FROM orders WHERE id = 4; DROP TABLE users"
        let result = await classify(sql)
        #expect(result.risk == .dangerous)
        #expect(result.statements == 3)
        let drop = result.findings.first { $0.category == "drop_table" }
        #expect(drop?.statement == 3)
        #expect(drop?.position == sql.utf8.count - "DROP TABLE users".utf8.count)
        let write = result.findings.first { $0.category == "write_data" }
        #expect(write?.statement == 2)
        #expect(write?.position == 22)  // the table name after DELETE FROM
    }

    @Test("names compared as PostgreSQL compares them: byte for byte, not as equivalent Unicode")
    func namesByBytes() async {
        // One name written é (U+00E9) both times: the same column, a condition true for every row.
        let same = await classify("DELETE FROM t WHERE \"\u{E9}\" = \"\u{E9}\"")
        #expect(same.findings.map(\.category).contains("delete_without_where"))
        // é and e + U+0301: two columns to PostgreSQL, so a real condition.
        let different = await classify("DELETE FROM t WHERE \"\u{E9}\" = \"e\u{301}\"")
        #expect(different.findings.map(\.category) == ["write_data"])
    }

    @Test("every node type of the rule table is found by its name's bytes; any other name is the unknown type")
    func nodeTypeTable() {
        let types = SQLNodeTypes.shared
        func lookUp(_ name: String) -> SQLNodeType { Array(name.utf8).withUnsafeBufferPointer { types.type(named: $0) } }
        for (name, rule) in SQLNodeRule.byNodeType {
            let type = lookUp(name)
            #expect(type.name == name && "\(type.rule.map { "\($0)" } ?? "none")" == "\(rule)")
        }
        for (name, special) in SQLNodeType.specials { #expect(lookUp(name).special == special) }
        for name in ["A_Const", "String", "", "SelectStm", "SelectStmtX", "selectstmt", "ÄStmt"] {
            #expect(lookUp(name) == .unknown && lookUp(name).rule == nil && lookUp(name).isUnknown, "\(name)")
        }
    }

    @Test("statements whose node names do not read as SQL are named as they are written")
    func statementNames() async {
        for (sql, name) in [("DROP DATABASE prod", "DROP DATABASE"), ("CREATE DATABASE scratch", "CREATE DATABASE")] {
            let result = await classify(sql)
            #expect(result.findings.contains { $0.detail.contains(name) }, "\(result.findings)")
            #expect(!result.findings.contains { $0.detail.contains("DROPDB") || $0.detail.contains("CREATEDB") })
        }
    }

    @Test("a statement the parser refuses is dangerous, with the parser's message and position")
    func unparseable() async {
        let result = await classify("SELECT * FROM t WHERE")
        #expect(result.risk == .dangerous)
        #expect(result.findings.first?.category == "unparseable")
        #expect(result.findings.first?.detail.contains("syntax error") == true)
        #expect(result.findings.first?.position == 21)
    }

    @Test("the policy moves categories between levels")
    func policyLevels() async {
        let strict = GuardSettings(sqlLevels: ["drop_table": .forbidden, "write_data": .dangerous])
        #expect(await classify("DROP TABLE t", settings: strict).risk == .forbidden)
        #expect(await classify("INSERT INTO t VALUES (1)", settings: strict).risk == .dangerous)
        #expect(await classify("SELECT 1", settings: strict).risk == .read)
    }

    @Test("statements longer than the cap are refused as too complex, not parsed")
    func tooLarge() async {
        let sql = "SELECT " + String(repeating: "1+", count: SQLClassifier.maximumBytes / 2) + "1"
        let result = await classify(sql)
        #expect(result.risk == .dangerous)
        #expect(result.categories == ["too_complex"])
        #expect(result.findings[0].detail.contains("at most \(SQLClassifier.maximumBytes) bytes"))
    }

    @Test("the deepest expressions that fit under the cap neither crash the parser nor the reader", arguments: [
        ("1+", "1"), ("(", "1"), ("NOT ", "true"), ("ARRAY[", "1"), ("f(", "1"), ("-", "1"), ("x.", "y"),
    ])
    func deepNesting(prefix: String, core: String) async {
        let count = (SQLClassifier.maximumBytes - 100) / prefix.utf8.count
        let closing = prefix.hasSuffix("(") ? ")" : prefix.hasSuffix("[") ? "]" : ""
        let sql = "SELECT " + String(repeating: prefix, count: count) + core + String(repeating: closing, count: count)
        let result = await classify(sql)
        // Either PostgreSQL's parser refuses it (memory exhausted) or it is too deep to read back:
        // both fail closed. A crash would end the test process.
        #expect(result.risk >= .read)
        if sql.utf8.count <= SQLClassifier.maximumBytes, prefix == "1+" {
            #expect(result.risk == .dangerous)
        }
    }

    @Test("approvers see the statement rebuilt without comments")
    func normalized() async {
        let result = await classify("DELETE FROM t -- WHERE id = 1\n", normalize: true)
        #expect(result.risk == .dangerous)
        #expect(result.normalized == "DELETE FROM t")
    }

    /// libpg_query cannot rebuild a `BEGIN ATOMIC` body; approvers still get the text without its
    /// comments, token for token (strings intact), rather than nothing.
    @Test("a BEGIN ATOMIC function is shown without its comments")
    func beginAtomicNormalized() async {
        let text = "CREATE FUNCTION purge() RETURNS void LANGUAGE sql\nBEGIN ATOMIC\n  -- only the test rows\n  DELETE FROM t /* WHERE id < 10 */;\n  SELECT 'a -- b', $$c /* d */$$;\nEND"
        let result = await classify(text, normalize: true)
        #expect(result.risk == .dangerous, "the DELETE inside has no WHERE")
        #expect(result.normalized == "CREATE FUNCTION purge() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t ; SELECT 'a -- b', $$c /* d */$$; END")
        #expect(PgQuery.withoutComments("SELECT 1 -- c\n/* d */ + 2") == "SELECT 1 + 2")
        #expect(PgQuery.withoutComments("SELECT 'unterminated") == nil)
    }

    @Test("a DO block's PL/pgSQL is read: dynamic EXECUTE and dangerous calls inside are found")
    func doBlock() async {
        let result = await classify("DO $x$ BEGIN PERFORM pg_terminate_backend(42); EXECUTE 'DROP TABLE ' || 't'; END $x$")
        #expect(result.categories.contains("terminate_session"))
        #expect(result.categories.contains("dynamic_sql"))
        #expect(result.findings.allSatisfy { $0.detail.hasPrefix("in DO block") })
    }

    @Test("EXPLAIN plans without running; EXPLAIN ANALYZE runs the statement")
    func explain() async {
        #expect(await classify("EXPLAIN DELETE FROM t").risk == .read)
        #expect(await classify("EXPLAIN (ANALYZE) DELETE FROM t").risk == .dangerous)
        #expect(await classify("EXPLAIN (ANALYZE off) DELETE FROM t").risk == .read)
        #expect(await classify("EXPLAIN ANALYZE DELETE FROM t WHERE id = 3").risk == .write)
    }

    @Test("PREPARE is judged by its statement, and EXECUTE of an unknown name fails closed")
    func prepared() async {
        #expect(await classify("PREPARE p AS DELETE FROM t").risk == .dangerous)
        #expect(await classify("PREPARE p AS SELECT 1; EXECUTE p").risk == .read)
        #expect(await classify("EXECUTE p").categories == ["execute_prepared"])
    }

    @Test("a parameter a changing statement's WHERE uses as a pattern is named with its place; one of a read, or a constant pattern, is not")
    func patternParameters() throws {
        let classifier = SQLClassifier()
        let delete = classifier.classify("DELETE FROM t WHERE v LIKE $1 OR w ~ $2::text OR u SIMILAR TO $3")
        #expect(delete.patternParameters.map(\.number) == [1, 2, 3], "\(delete.patternParameters)")
        #expect(delete.patternParameters.first?.location == 27)
        #expect(delete.risk == .write)
        #expect(classifier.classify("UPDATE t SET a = 1 WHERE v ILIKE $2 ESCAPE '!'").patternParameters.map(\.number) == [2])
        #expect(classifier.classify("SELECT * FROM t WHERE v LIKE $1").patternParameters.isEmpty)
        #expect(classifier.classify("DELETE FROM t WHERE v LIKE 'a%'").patternParameters.isEmpty)
        // Not remembered by shape: the answer depends on where the parameter stands (another constant before it moves it).
        let shape = try #require(SQLShape("DELETE FROM t WHERE k = 5 OR v LIKE $1"))
        #expect(!classifier.classify("DELETE FROM t WHERE k = 5 OR v LIKE $1", shape: shape).holdsForShape)
    }
}
