import GatehouseCore
import Testing
@testable import GatehouseGuard

/// The memory by shape (`SQLShape`) answers a text with the classification of another text that
/// differs only in its constants. These tests hold it to giving the same answer as classifying the
/// text afresh.
@Suite("Remembered classifications by shape")
struct ShapeMemoryTests {
    static let sql = Action.Kind.sql

    /// Other values for a constant of each kind, chosen to reach every rule that reads constants:
    /// equal and unequal comparisons, LIKE patterns, booleans spelt as text, catalog names in strings.
    static func alternatives(kind: Int) -> [String] {
        switch kind {
        case 266: ["0", "1", "2", "7", "42", "2147483647"]
        case 260: ["0.0", "1.5", "1e3", "99999999999"]
        case 261: ["''", "'x'", "'%'", "'%%'", "'a%'", "'pg_authid'", "'pg_catalog.pg_shadow'", "'off'", "'true'", "'f'",
                   "'0'", "'1'", "'users'", "'DROP TABLE users'", "'/etc/passwd'", "$$x$$"]
        case 263: ["B'0'", "B'1010'"]
        case 264: ["X'00'", "X'FF'"]
        default: []
        }
    }

    /// The text with the constants at `replacements`' token numbers replaced.
    static func variant(_ text: String, _ tokens: [ScanTokens.Token], _ replacements: [Int: String]) -> String {
        var bytes = Array(text.utf8)
        for (index, value) in replacements.sorted(by: { $0.key > $1.key }) {
            bytes.replaceSubrange(tokens[index].start..<tokens[index].end, with: Array(value.utf8))
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes with WHERE conditions that select every row or some (`scripts/oracle-corpus.sh`'s list), as
    /// corpus entries, for more constants in conditions than the corpus holds.
    static let generated: [CorpusEntry] = {
        let predicates = [
            "true", "1 = 1", "NOT false", "id = id", "a = a OR a IS NULL", "a IS NULL OR a IS NOT NULL", "EXISTS (SELECT 1)",
            "(SELECT count(*) FROM jobs) > 0", "coalesce(a, 0) = coalesce(a, 0)", "name LIKE '%'", "id = 1", "id > 3", "id IN (1, 2)",
            "status = 'new'", "created_at < now() - interval '20 days'", "x BETWEEN 2 AND 3", "true AND id = 2", "false OR id = 2",
            "id = 2 OR true", "1 = 2 OR id = 3", "'a' = 'a'", "'a' <> 'b' AND id = 4", "2 > 1", "1 < 2 OR id = 5", "5 = 5.0",
            "lower(name) = lower('X')", "id = -1", "NOT (1 = 2)", "(id = 1) = (id = 1)", "a + 1 = a + 1", "a + 1 = a + 2",
        ]
        var entries: [CorpusEntry] = []
        for table in ["users", "app.t"] {
            for predicate in predicates {
                for statement in ["DELETE FROM \(table) WHERE \(predicate)", "UPDATE \(table) SET b = 0 WHERE \(predicate)"] {
                    for text in [statement, "WITH gone AS (\(statement) RETURNING 1) SELECT count(*) FROM gone", "EXPLAIN ANALYZE \(statement)",
                                 "MERGE INTO \(table) t USING src s ON \(predicate) WHEN MATCHED THEN DELETE"] {
                        entries.append(CorpusEntry(level: .read, categories: [], text: text, line: 0))
                    }
                }
            }
        }
        return entries
    }()

    @Test("every corpus statement with its constants varied: the remembered answer is the fresh one")
    func corpusWithConstantsVaried() async {
        var remembered = 0, compared = 0, notRemembered = 0
        for entry in CorpusEntry.sql + Self.generated {
            guard let shape = SQLShape(entry.text), let tokens = PgQuery.tokens(entry.text) else { continue }
            let (classification, holds) = SQLClassifier().classify(entry.text, shape: shape)
            #expect(classification == SQLClassifier().classify(entry.text), "\(entry.text): the shape's classification is the plain one")
            guard holds, let relative = shape.relative(classification) else {
                notRemembered += 1
                continue
            }
            remembered += 1
            let constants = tokens.indices.filter { SQLShape.constantKinds.contains(tokens[$0].kind) }
            let originals = constants.map { String(decoding: Array(entry.text.utf8)[tokens[$0].start..<tokens[$0].end], as: UTF8.self) }
            var variants: [[Int: String]] = []
            for index in constants {
                // Each constant alone takes every other value, including those of the text's other constants.
                for value in Self.alternatives(kind: tokens[index].kind) + originals { variants.append([index: value]) }
            }
            for round in 0..<8 {
                // All at once: the same value everywhere (`1 = 1`), then different ones.
                var all: [Int: String] = [:]
                for (position, index) in constants.enumerated() {
                    let values = Self.alternatives(kind: tokens[index].kind)
                    all[index] = values[(round * (position + 1)) % values.count]
                }
                variants.append(all)
            }
            for replacements in variants {
                let text = Self.variant(entry.text, tokens, replacements)
                guard let other = SQLShape(text), other == shape else { continue }
                compared += 1
                let fresh = SQLClassifier().classify(text)
                #expect(other.absolute(relative) == fresh, "line \(entry.line) (0: generated): \(text)")
            }
        }
        #expect(remembered >= 200, "statements remembered by shape: \(remembered)")
        #expect(compared >= 5_000, "variants compared: \(compared)")
        #expect(notRemembered >= 150, "statements whose constants matter or cannot be told apart: \(notRemembered)")
    }

    @Test("a condition that compares constants is judged afresh for every text")
    func constantConditions() async {
        let guardian = ActionGuard()
        let settings = GuardSettings()
        for (text, risk) in [("DELETE FROM users WHERE 1 = 2", RiskLevel.write), ("DELETE FROM users WHERE 1 = 1", .dangerous),
                             ("DELETE FROM users WHERE 2 = 1", .write), ("UPDATE users SET a = 1 WHERE 'x' = 'x'", .dangerous),
                             ("UPDATE users SET a = 2 WHERE 'x' = 'y'", .write), ("DELETE FROM users WHERE name LIKE 'a%'", .write),
                             ("DELETE FROM users WHERE name LIKE '%'", .dangerous), ("DELETE FROM users WHERE id = 3", .write),
                             ("DELETE FROM users WHERE id = 3 OR 4 = 4", .dangerous),
                             ("SELECT table_to_xml('users', true, true, '')", .read),
                             ("SELECT table_to_xml('pg_authid', true, true, '')", .dangerous)] {
            #expect(await guardian.classify(Action(kind: Self.sql, text: text), settings: settings).risk == risk, "\(text)")
            #expect(guardian.classifyInline(Action(kind: Self.sql, text: text + " "), settings: settings)?.risk == risk, "\(text)")
        }
    }

    @Test("statements that differ only in constants share one remembered shape, with their own positions")
    func sharedShape() async {
        let guardian = ActionGuard()
        let settings = GuardSettings()
        let first = "UPDATE users SET name = 'a' WHERE id = 1; TRUNCATE audit_copy"
        let second = "UPDATE users SET name = 'a much longer name' WHERE id = 123456; TRUNCATE audit_copy"
        let one = await guardian.classify(Action(kind: Self.sql, text: first), settings: settings)
        #expect(guardian.rememberedShapes == 1)
        let two = await guardian.classify(Action(kind: Self.sql, text: second), settings: settings)
        #expect(two == SQLClassifier().classify(second))
        #expect(guardian.rememberedShapes == 1)
        let truncate = try? #require(two.findings.first { $0.category == "truncate" })
        #expect(truncate?.position == second.utf8.count - "TRUNCATE audit_copy".utf8.count)
        #expect(one.findings.first { $0.category == "truncate" }?.position == first.utf8.count - "TRUNCATE audit_copy".utf8.count)
    }

    @Test("texts whose strings are names, options or bodies are not remembered by shape")
    func notEveryStringIsAConstant() async {
        let guardian = ActionGuard()
        let settings = GuardSettings()
        for text in ["COPY users FROM '/tmp/users.csv'", "DO 'BEGIN PERFORM 1; END'", "ALTER ROLE app PASSWORD 'secret1234'",
                     "CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql", "COMMENT ON TABLE users IS 'people'",
                     "FETCH 5 FROM c", "BEGIN READ WRITE; UPDATE t SET a = 1 WHERE id = 2"] {
            _ = await guardian.classify(Action(kind: Self.sql, text: text), settings: settings)
            #expect(guardian.rememberedShapes == 0, "\(text)")
        }
        // The body of a DO block differs: judged afresh.
        let harmless = await guardian.classify(Action(kind: Self.sql, text: "DO 'BEGIN PERFORM 1; END'"), settings: settings)
        let harmful = await guardian.classify(Action(kind: Self.sql, text: "DO 'BEGIN DELETE FROM users; END'"), settings: settings)
        #expect(harmless.risk != .dangerous)
        #expect(harmful.risk == .dangerous)
    }

    @Test("a NUL byte after a remembered shape is not hidden from the classifier")
    func nulByte() async {
        let guardian = ActionGuard()
        let settings = GuardSettings()
        #expect(await guardian.classify(Action(kind: Self.sql, text: "SELECT 5"), settings: settings).risk == .read)
        #expect(guardian.rememberedShapes == 1)
        let hidden = await guardian.classify(Action(kind: Self.sql, text: "SELECT 6\u{0}; DROP TABLE users"), settings: settings)
        #expect(hidden.categories.contains("unparseable"))
        #expect(guardian.classifyInline(Action(kind: Self.sql, text: "SELECT 7\u{0}; DROP TABLE users"), settings: settings)?.categories.contains("unparseable") == true)
    }

    @Test("a negative constant, a large one and a string in its place are other shapes or the same answer")
    func constantKinds() async {
        let guardian = ActionGuard()
        let settings = GuardSettings()
        let texts = ["SELECT * FROM t WHERE a = 1 LIMIT 5", "SELECT * FROM t WHERE a = -1 LIMIT 5", "SELECT * FROM t WHERE a = 99999999999 LIMIT 5",
                     "SELECT * FROM t WHERE a = '1' LIMIT 5", "SELECT * FROM t WHERE a = - 7 LIMIT 5", "SELECT * FROM t WHERE a = 1.5 LIMIT 5"]
        for text in texts {
            #expect(await guardian.classify(Action(kind: Self.sql, text: text), settings: settings) == SQLClassifier().classify(text), "\(text)")
        }
        // One shape per spelling of the constant's kind: integer, negated integer, number, string.
        #expect(guardian.rememberedShapes == 4)
    }

    @Test("a change of the guard settings forgets the shapes")
    func settingsChange() async {
        let guardian = ActionGuard()
        #expect(await guardian.classify(Action(kind: Self.sql, text: "DELETE FROM t WHERE id = 1"), settings: GuardSettings()).risk == .write)
        let strict = GuardSettings(sqlLevels: ["write_data": .dangerous])
        #expect(await guardian.classify(Action(kind: Self.sql, text: "DELETE FROM t WHERE id = 2"), settings: strict).risk == .dangerous)
        #expect(await guardian.classify(Action(kind: Self.sql, text: "DELETE FROM t WHERE id = 3"), settings: GuardSettings()).risk == .write)
    }
}
