import Foundation
import GatehouseCore
import Testing
@testable import GatehouseGuard

/// Adversarial probes of the memory by shape (`SQLShape`, `ActionGuard`): texts A and B of one shape
/// where the answer remembered from A, given for B, differs from a fresh classification of B.
///
/// Every probe asserts: `ActionGuard` primed with A answers B as `SQLClassifier().classify(B)` does.
@Suite("Shape memory: adversarial probes")
struct ShapeAdversaryTests {
    /// Threads of this suite's own, as the fuzz runs have: a sweep is one long job, and on the shared
    /// threads it held up the test servers' classifications past their 30 s deadline.
    static let threads = ParserThreads(count: 2)

    static let settings = GuardSettings()

    // MARK: Helpers

    /// What the memory by shape answers for `b` after `a` (nil when `a` is not remembered by shape or
    /// the shapes differ), worked out as `ActionGuard` does, and `b`'s fresh classification.
    /// Must run on a parser thread.
    static func viaShape(prime a: String, then b: String) -> (remembered: ActionClassification?, fresh: ActionClassification) {
        let fresh = SQLClassifier().classify(b)
        guard let shapeA = SQLShape(a), let shapeB = SQLShape(b), shapeA == shapeB else { return (nil, fresh) }
        let (classification, holds) = SQLClassifier().classify(a, shape: shapeA)
        guard holds, let relative = shapeA.relative(classification) else { return (nil, fresh) }
        return (shapeB.absolute(relative), fresh)
    }

    /// The answer of a fresh `ActionGuard` for `b` after it classified `a` (both ways in).
    static func throughGuard(prime a: String, then b: String) async -> (async: ActionClassification, inline: ActionClassification?, fresh: ActionClassification) {
        let first = ActionGuard(threads: threads)
        _ = await first.classify(Action(kind: .sql, text: a), settings: settings)
        let viaAsync = await first.classify(Action(kind: .sql, text: b), settings: settings)
        let second = ActionGuard(threads: threads)
        _ = await second.classify(Action(kind: .sql, text: a), settings: settings)
        let viaInline = await threads.run { second.classifyInline(Action(kind: .sql, text: b), settings: settings) }
        let fresh = await threads.run { SQLClassifier().classify(b) }
        return (viaAsync, viaInline, fresh)
    }

    /// Asserts the guard primed with `a` answers `b` as a fresh classification does.
    static func expectSame(prime a: String, then b: String, _ note: String = "", sourceLocation: SourceLocation = #_sourceLocation) async {
        let (viaAsync, viaInline, fresh) = await throughGuard(prime: a, then: b)
        #expect(viaAsync == fresh, "\(note)\nA: \(a.debugDescription)\nB: \(b.debugDescription)\nremembered: \(describe(viaAsync))\nfresh:      \(describe(fresh))", sourceLocation: sourceLocation)
        #expect(viaInline == fresh, "inline \(note)\nA: \(a.debugDescription)\nB: \(b.debugDescription)", sourceLocation: sourceLocation)
    }

    static func describe(_ c: ActionClassification) -> String {
        "\(c.risk) " + c.findings.map { "\($0.category)@\($0.position)" }.joined(separator: ",")
    }

    /// Replaces each `§i` (integer), `§f` (number), `§s` (string), `§b` (bit string), `§x` (hex string)
    /// with the value chosen for it.
    static func fill(_ template: String, _ values: [String]) -> String {
        var out = ""
        var index = 0
        var characters = Substring(template)
        while let mark = characters.firstIndex(of: "§") {
            out += characters[..<mark]
            let kind = characters.index(after: mark)
            out += values[index]
            index += 1
            characters = characters[characters.index(after: kind)...]
        }
        return out + characters
    }

    static func slots(_ template: String) -> [Character] {
        var kinds: [Character] = []
        var iterator = template.makeIterator()
        while let c = iterator.next() { if c == "§", let k = iterator.next() { kinds.append(k) } }
        return kinds
    }

    /// Values for each kind of constant: ones rules compare or read (equal to each other, `%`, catalog
    /// names, booleans spelt as text), and spellings PostgreSQL reads as the same value (`E'\x25'` is
    /// `'%'`, `$$pg_authid$$` and `E'pg\x5fauthid'` are `'pg_authid'`).
    static let pool: [Character: [String]] = [
        "i": ["0", "1", "2", "42", "2147483647"],
        "f": ["0.0", "1.5", "1e3", "2147483648", ".5"],
        "s": ["''", "'x'", "'%'", "'%%'", "'a%'", "'pg_authid'", "'pg_catalog.pg_shadow'", "'PG_AUTHID'", "'off'", "'on'",
              "'true'", "'t'", "'f'", "'0'", "'1'", "'users'", "E'\\x25'", "$$%$$", "$t$pg_authid$t$", "E'pg\\x5fauthid'",
              "'x'\n'y'", "'a''b'", "N'pg_authid'"],
        "b": ["B'0'", "B'1'", "B'01'"],
        "x": ["X'0'", "X'1F'"],
    ]

    /// Every choice of values when there are few, else the all-equal ones and a deterministic sample.
    static func choices(_ kinds: [Character], limit: Int = 400) -> [[String]] {
        let lists = kinds.map { pool[$0] ?? [] }
        let total = lists.reduce(1) { $0 * $1.count }
        var result: [[String]] = []
        if total <= limit {
            for n in 0..<total {
                var rest = n
                result.append(lists.map { list in defer { rest /= list.count }; return list[rest % list.count] })
            }
            return result
        }
        // Same index for every slot (equal values where kinds agree).
        for n in 0..<(lists.map(\.count).max() ?? 0) { result.append(lists.map { $0[n % $0.count] }) }
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<limit {
            result.append(lists.map { list in
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                return list[Int((seed >> 33) % UInt64(list.count))]
            })
        }
        return result
    }

    struct Mismatch: Sendable {
        var a: String
        var b: String
        var remembered: String
        var fresh: String
        /// "risk" when the levels differ, "findings" when the categories do, else "positions".
        var kind: String
    }

    static func difference(_ x: ActionClassification, _ y: ActionClassification) -> String {
        if x.risk != y.risk { return "risk" }
        if x.categories.sorted() != y.categories.sorted() || x.findings.map(\.detail) != y.findings.map(\.detail) { return "findings" }
        return "positions"
    }

    typealias Sweep = (mismatches: [Mismatch], compared: Int, stored: Int)

    /// `pairwise` over each group of texts `groups` makes (on a parser thread), keeping at most `keep`
    /// mismatches per group so one bad rule does not drown the rest.
    static func sweep(keep: Int, _ groups: @escaping @Sendable () -> [[String]]) async -> Sweep {
        await threads.run { () -> Sweep in
            var all: [Mismatch] = []
            var compared = 0, stored = 0
            for texts in groups() {
                let (m, c, s) = pairwise(texts)
                all += m.prefix(keep)
                compared += c
                stored += s
            }
            return (all, compared, stored)
        }
    }

    /// For every pair of texts of one shape among `texts`, A remembered by shape: B's remembered answer
    /// against B's fresh one. Returns the mismatches and how many pairs were compared.
    static func pairwise(_ texts: [String]) -> (mismatches: [Mismatch], compared: Int, stored: Int) {
        struct Entry { var text: String; var fresh: ActionClassification; var relative: ActionClassification? }
        var groups: [SQLShape: [Entry]] = [:]
        for text in Set(texts) {
            guard let shape = SQLShape(text) else { continue }
            let fresh = SQLClassifier().classify(text)
            let (classification, holds) = SQLClassifier().classify(text, shape: shape)
            let relative = holds ? shape.relative(classification) : nil
            groups[shape, default: []].append(Entry(text: text, fresh: fresh, relative: relative))
        }
        var mismatches: [Mismatch] = []
        var compared = 0, stored = 0
        for (_, entries) in groups {
            // Distinct remembered answers, each with one text that produced it.
            var remembered: [(ActionClassification, String)] = []
            for entry in entries {
                guard let relative = entry.relative else { continue }
                stored += 1
                if !remembered.contains(where: { $0.0 == relative }) { remembered.append((relative, entry.text)) }
            }
            for entry in entries {
                guard let shape = SQLShape(entry.text) else { continue }
                for (relative, source) in remembered where source != entry.text {
                    compared += 1
                    let answer = shape.absolute(relative)
                    if answer != entry.fresh {
                        mismatches.append(Mismatch(a: source, b: entry.text, remembered: describe(answer), fresh: describe(entry.fresh),
                                                   kind: difference(answer, entry.fresh)))
                    }
                }
            }
        }
        return (mismatches, compared, stored)
    }

    /// Reports mismatches (at most `show` of them in full), confirming the first few through a real
    /// `ActionGuard`.
    static func report(_ label: String, _ result: Sweep, show: Int = 12,
                       sourceLocation: SourceLocation = #_sourceLocation) async {
        let kinds = Dictionary(grouping: result.mismatches, by: \.kind).mapValues(\.count)
        if !result.mismatches.isEmpty {
            print("[\(label)] stored \(result.stored), pairs compared \(result.compared), mismatches \(result.mismatches.count) \(kinds.sorted { $0.key < $1.key })")
        }
        // Risk differences first.
        let ordered = result.mismatches.filter { $0.kind == "risk" } + result.mismatches.filter { $0.kind != "risk" }
        for mismatch in ordered.prefix(show) {
            print("[\(label)] \(mismatch.kind) A: \(mismatch.a.debugDescription)\n        B: \(mismatch.b.debugDescription)\n        remembered: \(mismatch.remembered)\n        fresh:      \(mismatch.fresh)")
            await expectSame(prime: mismatch.a, then: mismatch.b, label, sourceLocation: sourceLocation)
        }
        #expect(result.mismatches.isEmpty, "\(label): \(result.mismatches.count) pairs answered from memory differently from a fresh classification", sourceLocation: sourceLocation)
    }

    // MARK: Templates × constants

    /// Statement templates that reach the rules reading constants (WHERE analysis, LIKE, casts to bool,
    /// table_to_xml, READ WRITE, settings) and places where a constant is not a value (names, typmods,
    /// options, bodies), with constants of every kind.
    static let templates: [String] = [
        // WHERE analysis
        "DELETE FROM t WHERE §i = §i", "DELETE FROM t WHERE §s = §s", "DELETE FROM t WHERE §f = §f", "DELETE FROM t WHERE §b = §b",
        "DELETE FROM t WHERE §x = §x", "DELETE FROM t WHERE §i <> §i", "DELETE FROM t WHERE §i < §i", "DELETE FROM t WHERE §i >= §i",
        "DELETE FROM t WHERE §s <> §s", "DELETE FROM t WHERE §i != §i", "UPDATE t SET a = §i WHERE §i <= §i",
        "DELETE FROM t WHERE a LIKE §s", "DELETE FROM t WHERE a ILIKE §s", "DELETE FROM t WHERE a NOT LIKE §s",
        "DELETE FROM t WHERE a LIKE §s ESCAPE §s", "DELETE FROM t WHERE a::text LIKE §s::text", "DELETE FROM t WHERE a ~~ §s",
        "DELETE FROM t WHERE a SIMILAR TO §s", "DELETE FROM t WHERE §s::bool", "DELETE FROM t WHERE CAST(§s AS boolean)",
        "DELETE FROM t WHERE §i::bool", "DELETE FROM t WHERE bool §s", "DELETE FROM t WHERE NOT §s::bool",
        "DELETE FROM t WHERE a = §i OR §s::bool", "DELETE FROM t WHERE a = §i OR §i = §i", "DELETE FROM t WHERE a = §i AND §i = §i",
        "DELETE FROM t WHERE a + §i = a + §i", "DELETE FROM t WHERE a || §s = a || §s", "DELETE FROM t WHERE f(a, §s) = f(a, §s)",
        "DELETE FROM t WHERE (a = §i) IS TRUE", "DELETE FROM t WHERE (§i = §i) IS TRUE", "DELETE FROM t WHERE a IN (§i, §i)",
        "DELETE FROM t WHERE coalesce(a, §i) = coalesce(a, §i)", "DELETE FROM t WHERE a[§i] IS NULL OR a[§i] IS NOT NULL",
        "DELETE FROM t WHERE a->>§s IS NULL OR a->>§s IS NOT NULL", "DELETE FROM t WHERE (a + §i) IS NULL OR (a + §i) IS NOT NULL",
        "DELETE FROM t WHERE a IS NOT DISTINCT FROM a + §i", "DELETE FROM t WHERE a + §i IS NOT DISTINCT FROM a + §i",
        "DELETE FROM t WHERE §i IS NOT DISTINCT FROM §i", "DELETE FROM t WHERE a::varchar(§i) = a::varchar(§i)",
        "DELETE FROM t WHERE a::numeric(§i, §i) = a::numeric(§i, §i)", "DELETE FROM t WHERE -§i = -§i", "DELETE FROM t WHERE a = -§i OR -§i < §i",
        "DELETE FROM t WHERE - §i = - §i", "DELETE FROM t WHERE -§f = -§f", "DELETE FROM t WHERE §i - §i = §i",
        "DELETE FROM t WHERE a = a + §i - §i", "DELETE FROM t WHERE interval §s = interval §s", "DELETE FROM t WHERE §s::regclass = §s::regclass",
        "DELETE FROM t WHERE a = ANY (ARRAY[§i, §i])", "DELETE FROM t WHERE a BETWEEN §i AND §i", "DELETE FROM t WHERE NOT (§i = §i)",
        "DELETE FROM t WHERE NOT §s", "DELETE FROM t WHERE §i = §i::int", "DELETE FROM t WHERE §s = §s COLLATE \"C\"",
        "DELETE FROM t WHERE (§i, §i) = (§i, §i)", "DELETE FROM t WHERE ROW(a, §i) = ROW(a, §i)", "DELETE FROM t WHERE a = a AND §i = §i",
        "DELETE FROM t WHERE EXISTS (SELECT §i WHERE §i = §i)", "DELETE FROM t WHERE x.a = t.a + §i",
        "DELETE FROM t AS x WHERE x.a = t.a + §i", "UPDATE t SET a = §s WHERE a = a OR §s = §s",
        "WITH d AS (DELETE FROM t WHERE §s LIKE §s RETURNING *) SELECT * FROM d",
        "MERGE INTO t USING s ON §i = §i WHEN MATCHED THEN DELETE", "MERGE INTO t USING s ON t.a = s.a + §i WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING s ON §s::bool WHEN MATCHED THEN UPDATE SET a = §i", "MERGE INTO t USING s ON t.a = t.a WHEN MATCHED AND §i = §i THEN DELETE",
        "EXPLAIN ANALYZE DELETE FROM t WHERE §i = §i", "EXPLAIN DELETE FROM t WHERE §i = §i", "EXPLAIN (ANALYZE) UPDATE t SET a = §i WHERE §s = §s",
        "EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM t WHERE a = §i", "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t WHERE §i = §i; END",
        "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u WHERE §i = §i",
        // Functions that read a table or query named in a string
        "SELECT table_to_xml(§s, true, true, §s)", "SELECT table_to_xml(§s::regclass, true, true, '')", "SELECT table_to_xml(regclass §s, true, true, '')",
        "SELECT table_to_xml(CAST(§s AS regclass), true, true, '')", "SELECT table_to_xmlschema((§s), false, false, '')",
        "SELECT table_to_xml_and_xmlschema(§s::text::regclass, true, true, '')", "SELECT query_to_xml(§s, true, true, §s)",
        "SELECT schema_to_xml(§s, true, true, '')", "SELECT database_to_xml(true, true, §s)", "SELECT ts_stat(§s)", "SELECT ts_rewrite(§s::tsquery, §s)",
        "SELECT ts_rewrite(§s::tsquery, §s::tsquery, §s::tsquery)", "SELECT * FROM crosstab(§s)", "SELECT pg_read_file(§s, §i, §i)",
        "SELECT set_config(§s, §s, false)", "SELECT current_setting(§s)", "SELECT * FROM dblink(§s, §s) AS x(a int)", "SELECT pg_terminate_backend(§i)",
        "SELECT nextval(§s)", "SELECT setval(§s, §i)", "SELECT lo_unlink(§i)", "SELECT pg_notify(§s, §s)", "SELECT has_table_privilege(§s, §s)",
        "SELECT §s::regproc", "SELECT §s::regclass", "SELECT * FROM t WHERE a = §s::regclass::oid", "SELECT (§s::regclass).relname",
        // Settings and transactions
        "SET statement_timeout = §i", "SET statement_timeout TO §s", "SET TIME ZONE §s", "SET TIME ZONE §i", "SET TIME ZONE INTERVAL §s HOUR TO MINUTE",
        "SET ROLE §s", "SET SESSION AUTHORIZATION §s", "SET transaction_read_only = §i", "SET transaction_read_only = §s",
        "SET default_transaction_read_only TO §s", "SET search_path = §s", "SET search_path = §s, §s", "SET SCHEMA §s", "SET NAMES §s",
        "SET LOCAL work_mem = §s", "SET SESSION lock_timeout = §i", "SET application_name = §s", "SET TRANSACTION SNAPSHOT §s",
        "SET session_replication_role = §s", "ALTER SYSTEM SET work_mem = §s", "ALTER ROLE app SET work_mem = §s", "ALTER DATABASE d SET work_mem = §s",
        "SET x.y = §s", "SET extra_float_digits = -§i", "SET extra_float_digits = §f", "SET extra_float_digits = -§f",
        "BEGIN; SELECT §i; COMMIT", "BEGIN READ ONLY; UPDATE t SET a = §i WHERE id = §i", "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT §s",
        "SET TRANSACTION READ ONLY; SELECT §i", "START TRANSACTION READ WRITE; SELECT §i", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; SELECT §i",
        // Constants in DDL (defaults, typmods, bounds), DML and more
        "CREATE TABLE t (a int DEFAULT §i, b varchar(§i))", "CREATE TABLE t (a float(§i))", "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT §i",
        "ALTER TABLE t ADD COLUMN c int DEFAULT §s::int", "ALTER TABLE t ADD COLUMN c int DEFAULT §i + §i", "ALTER TABLE t ALTER COLUMN c SET DEFAULT §i",
        "ALTER TABLE t ADD COLUMN c timestamp DEFAULT now() - interval §s", "ALTER TABLE t ADD COLUMN c numeric(§i, §i) DEFAULT §f",
        "ALTER TABLE t ADD CONSTRAINT k CHECK (a > §i)", "ALTER TABLE t ADD CONSTRAINT k CHECK (a > §i) NOT VALID", "ALTER TABLE t ALTER COLUMN c TYPE varchar(§i)",
        "ALTER TABLE t ALTER COLUMN §i SET STATISTICS §i", "CREATE INDEX ON t (a) WHERE b = §i", "CREATE INDEX i ON t (a) WITH (fillfactor = §i)",
        "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (§i) TO (§i)", "CREATE TABLE p1 PARTITION OF p FOR VALUES WITH (MODULUS §i, REMAINDER §i)",
        "PREPARE p AS DELETE FROM t WHERE id = $1; EXECUTE p(§i)", "EXECUTE p(§i)", "PREPARE p(int) AS SELECT §i",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN §i", "CREATE FUNCTION f(a int DEFAULT §i) RETURNS int LANGUAGE sql RETURN a",
        "INSERT INTO t VALUES (§i, §s) ON CONFLICT (a) DO UPDATE SET b = §s WHERE t.c = §i", "DELETE FROM t WHERE id = §i RETURNING §s",
        "UPDATE t SET a = §i WHERE CURRENT OF c", "SELECT * FROM t LIMIT §i OFFSET §i", "SELECT * FROM t FETCH FIRST §i ROWS ONLY",
        "SELECT * FROM t FETCH FIRST -§i ROWS ONLY", "SELECT * FROM t ORDER BY §i", "SELECT * FROM t WHERE a = §i FOR UPDATE",
        "SELECT interval §s day, interval(§i) §s, timestamp(§i) §s", "SELECT current_time(§i)", "SELECT localtimestamp(§i)", "SELECT §s AT TIME ZONE §s",
        "SELECT extract(§s FROM now())", "SELECT substring(§s FROM §i FOR §i)", "SELECT overlay(§s PLACING §s FROM §i)", "SELECT trim(BOTH §s FROM §s)",
        "SELECT position(§s IN §s)", "SELECT xmlelement(NAME x, §s)", "SELECT xmlroot(§s::xml, VERSION §s)", "SELECT * FROM t TABLESAMPLE SYSTEM (§i) REPEATABLE (§i)",
        "SELECT sum(a) OVER (ORDER BY b ROWS BETWEEN §i PRECEDING AND §i FOLLOWING) FROM t", "SELECT a FROM t GROUP BY §i HAVING count(*) > §i",
        "VALUES (§i), (§s)", "COPY (SELECT §i) TO STDOUT", "COPY t FROM §s", "COPY t TO PROGRAM §s", "DECLARE c CURSOR FOR SELECT §i", "FETCH §i FROM c",
        "MOVE -§i IN c", "LOCK t IN ACCESS EXCLUSIVE MODE; SELECT §i", "NOTIFY ch, §s", "LISTEN ch; SELECT §i", "COMMENT ON TABLE t IS §s",
        "DO §s", "DO LANGUAGE plpgsql §s", "CREATE FUNCTION f() RETURNS void AS §s LANGUAGE sql", "CALL p(§i)", "SELECT §i; DROP TABLE t",
        "SELECT §s; TRUNCATE t", "TRUNCATE t; SELECT §i", "VACUUM (FULL §i) t", "VACUUM (FULL §s) t", "REINDEX (CONCURRENTLY §s) TABLE t",
        "EXPLAIN (ANALYZE §s) DELETE FROM t", "EXPLAIN (ANALYZE §i) DELETE FROM t WHERE a = §i", "CREATE SEQUENCE s INCREMENT §i START §i",
        "ALTER SEQUENCE s RESTART WITH §i", "CREATE ROLE r CONNECTION LIMIT §i", "ALTER ROLE r VALID UNTIL §s", "PREPARE TRANSACTION §s",
        "COMMIT PREPARED §s", "SELECT §b, §x", "SELECT §b::int", "SELECT §x::bit(§i)", "CREATE TABLE t (a bit(§i) DEFAULT §b)",
        "SELECT U&'\\0041' , §s", "SELECT E'\\'' || §s", "SELECT §s\n§s",
        // Pairs PostgreSQL's lexer merges with one token of lookahead (NOT_LA, NULLS_LA, WITH_LA)
        "DELETE FROM t WHERE a NOT BETWEEN §i AND §i", "DELETE FROM t WHERE a NOT IN (§i, §i)", "DELETE FROM t WHERE a NOT ILIKE §s",
        "DELETE FROM t WHERE a NOT SIMILAR TO §s", "UPDATE t SET a = §i WHERE b NOT LIKE §s", "SELECT * FROM t ORDER BY a NULLS LAST LIMIT §i",
        "SELECT §s::timestamp WITH TIME ZONE", "SELECT * FROM unnest(ARRAY[§i]) WITH ORDINALITY", "CREATE UNIQUE INDEX i ON t (a) NULLS NOT DISTINCT WHERE b = §i",
    ]

    @Test("templates × constants: every pair of one shape, the remembered answer is the fresh one")
    func templatesTimesConstants() async {
        let result = await Self.sweep(keep: 3) {
            Self.templates.map { template in Self.choices(Self.slots(template)).map { Self.fill(template, $0) } }
        }
        await Self.report("templates", result)
        #expect(result.compared > 5_000, "pairs compared: \(result.compared)")
    }

    // MARK: Corpus, every pair of variants

    @Test("corpus statements with constants varied: every pair of variants, not only the original first")
    func corpusPairwise() async {
        let result = await Self.sweep(keep: 3) {
            CorpusEntry.sql.filter { $0.text.utf8.count <= 2000 }.compactMap { entry -> [String]? in
                guard let tokens = PgQuery.tokens(entry.text) else { return nil }
                let constants = tokens.indices.filter { SQLShape.constantKinds.contains(tokens[$0].kind) }
                guard !constants.isEmpty, constants.count <= 8 else { return nil }
                let utf8 = Array(entry.text.utf8)
                let originals = constants.map { String(decoding: utf8[tokens[$0].start..<tokens[$0].end], as: UTF8.self) }
                func kind(_ token: Int) -> Character {
                    switch tokens[token].kind { case 266: "i"; case 260: "f"; case 261: "s"; case 263: "b"; default: "x" }
                }
                var texts: [String] = [entry.text]
                let kinds = constants.map(kind)
                for choice in Self.choices(kinds, limit: 60) {
                    var bytes = utf8
                    for (n, index) in constants.enumerated().reversed() {
                        bytes.replaceSubrange(tokens[index].start..<tokens[index].end, with: Array(choice[n].utf8))
                    }
                    texts.append(String(decoding: bytes, as: UTF8.self))
                }
                // Each constant takes the value of each other constant of the text.
                for index in constants {
                    for value in originals where kind(index) == "s" || !value.hasPrefix("'") {
                        var bytes = utf8
                        bytes.replaceSubrange(tokens[index].start..<tokens[index].end, with: Array(value.utf8))
                        texts.append(String(decoding: bytes, as: UTF8.self))
                    }
                }
                return texts
            }
        }
        await Self.report("corpus pairwise", result)
        #expect(result.compared > 5_000, "pairs compared: \(result.compared)")
    }

    // MARK: Comments: where they are is part of the shape, what they say is not

    /// libpg_query returns comments as tokens and its lookahead (`NOT` before `IN`/`LIKE`/..., `NULLS`
    /// before `FIRST`/`LAST`, `WITH` before `TIME`/`ORDINALITY`) reads the raw next token: a comment
    /// between the two stops the merge, so these texts parse differently and must be other shapes.
    @Test("a comment between NOT and IN: another shape, judged afresh")
    func commentBlocksLookahead() async {
        let pairs = [
            ("SELECT * FROM t WHERE a NOT IN (1, 2)", "SELECT * FROM t WHERE a NOT /* c */ IN (1, 2)"),
            ("SELECT * FROM t WHERE a NOT LIKE 'x%'", "SELECT * FROM t WHERE a NOT -- c\n LIKE 'x%'"),
            ("SELECT * FROM t ORDER BY a NULLS FIRST LIMIT 5", "SELECT * FROM t ORDER BY a NULLS /**/ FIRST LIMIT 5"),
            ("SELECT * FROM unnest(ARRAY[1]) WITH ORDINALITY", "SELECT * FROM unnest(ARRAY[1]) WITH /**/ ORDINALITY"),
            ("SELECT '2020-01-01'::timestamp WITH TIME ZONE", "SELECT '2020-01-01'::timestamp WITH /**/ TIME ZONE"),
        ]
        for (plain, commented) in pairs {
            await Self.expectSame(prime: plain, then: commented, "comment inside a lookahead pair (plain first)")
        }
        // The other way round. PostgreSQL's grammar accepts WITH_LA before a CTE name and NOT_LA before an
        // expression, so `WITH ordinality AS`, `WITH time AS` and `NOT between` parse either way; `nulls first`
        // as a column and its alias parses only with the comment.
        let others = [
            ("WITH /**/ ordinality AS (SELECT 1) SELECT * FROM ordinality", "WITH ordinality AS (SELECT 1) SELECT * FROM ordinality"),
            ("WITH /**/ time AS (SELECT 1) SELECT * FROM time", "WITH time AS (SELECT 1) SELECT * FROM time"),
            ("SELECT 1 WHERE NOT /**/ between", "SELECT 1 WHERE NOT between"),
            ("SELECT nulls /**/ first FROM (SELECT 1 AS nulls) s", "SELECT nulls first FROM (SELECT 1 AS nulls) s"),
            ("WITH /**/ ordinality AS (DELETE FROM users WHERE id = 1 RETURNING *) SELECT * FROM ordinality",
             "WITH ordinality AS (DELETE FROM users WHERE id = 1 RETURNING *) SELECT * FROM ordinality"),
        ]
        for (commented, plain) in others {
            await Self.expectSame(prime: commented, then: plain, "comment inside a lookahead pair (commented first)")
        }
    }

    /// Every corpus and template text with a comment after each token in turn, saying one thing or another
    /// (the same shape), both ways round.
    @Test("comments after every token: whatever they say, the same answer")
    func commentsEverywhere() async {
        let result = await Self.sweep(keep: 2) {
            let texts = CorpusEntry.sql.map(\.text).filter { $0.utf8.count <= 600 }
                + Self.templates.map { Self.fill($0, Self.slots($0).map { Self.pool[$0]![1] }) }
            return texts.compactMap { text -> [String]? in
                guard let tokens = PgQuery.tokens(text), SQLShape(text) != nil, tokens.count <= 60 else { return nil }
                let utf8 = Array(text.utf8)
                var variants = [text]
                for token in tokens.dropLast() {
                    for comment in ["/**/", "/* another comment */", " -- c\n", " -- another\n"] {
                        var bytes = utf8
                        bytes.insert(contentsOf: Array(comment.utf8), at: token.end)
                        variants.append(String(decoding: bytes, as: UTF8.self))
                    }
                }
                return variants
            }
        }
        await Self.report("comments", result, show: 8)
        #expect(result.compared > 5_000, "pairs compared: \(result.compared)")
    }

    // MARK: Positions

    /// A statement's position is where PostgreSQL says it starts, after the `;`, moved past spaces: it is
    /// where a token or a comment starts, in every text of the shape.
    @Test("a statement after a form feed or a comment: positions")
    func statementPositions() async {
        let cases = [
            ("SELECT 1; TRUNCATE audit", "SELECT 2;\u{0C}TRUNCATE audit"),
            ("SELECT 1; TRUNCATE audit", "SELECT 2; /* why */ TRUNCATE audit"),
            ("SELECT 1; TRUNCATE audit", "SELECT 2; -- why\nTRUNCATE audit"),
            ("SELECT 1; DROP TABLE t", "SELECT 22 ;\u{0C}\u{0C}DROP TABLE t"),
            ("SELECT 'a'; DELETE FROM t", "SELECT 'a';/**/DELETE FROM t"),
            // The first statement: a leading comment is no token (remembered as "the text's start").
            ("/* job 7 */ TRUNCATE audit; SELECT 1", "  TRUNCATE audit; SELECT 2"),
            ("  TRUNCATE audit; SELECT 1", "/* job 7 */ TRUNCATE audit; SELECT 2"),
            ("\u{0C}TRUNCATE audit; SELECT 1", "TRUNCATE audit; SELECT 2"),
        ]
        for (a, b) in cases {
            await Self.expectSame(prime: a, then: b, "statement position")
        }
    }

    /// Whitespace of every kind PostgreSQL's scanner skips, in place of each space.
    @Test("spacing of every kind between tokens")
    func spacing() async {
        let result = await Self.sweep(keep: 2) {
            CorpusEntry.sql.map(\.text).filter { $0.utf8.count <= 400 && SQLShape($0) != nil }.map { text in
                var variants = [text]
                for space in ["\u{0C}", "\t", "\n", "\r\n", "  ", " /* c */ "] {
                    variants.append(text.replacingOccurrences(of: " ", with: space))
                    if let range = text.range(of: "; ") { variants.append(text.replacingCharacters(in: range, with: ";" + space)) }
                }
                return variants
            }
        }
        await Self.report("spacing", result, show: 6)
        #expect(result.compared > 1_000, "pairs compared: \(result.compared)")
    }

    // MARK: Hand-written probes

    /// Spellings of one value PostgreSQL reads alike, and values that only a read of the constant tells
    /// apart: each a pair of one shape.
    @Test("hand-written pairs of one shape")
    func handWritten() async {
        let pairs: [(String, String)] = [
            // LIKE '%' in other spellings
            ("DELETE FROM users WHERE name LIKE 'a%'", "DELETE FROM users WHERE name LIKE E'\\x25'"),
            ("DELETE FROM users WHERE name LIKE 'a%'", "DELETE FROM users WHERE name LIKE $$%$$"),
            ("DELETE FROM users WHERE name LIKE 'a%'", "DELETE FROM users WHERE name LIKE '%'\n'%'"),
            ("DELETE FROM users WHERE name LIKE 'a%'", "DELETE FROM users WHERE name LIKE E'\\u0025'"),
            // A credential catalog in other spellings
            ("SELECT table_to_xml('users', true, true, '')", "SELECT table_to_xml(E'pg\\x5fauthid', true, true, '')"),
            ("SELECT table_to_xml('users', true, true, '')", "SELECT table_to_xml($x$pg_authid$x$, true, true, '')"),
            ("SELECT table_to_xml('users', true, true, '')", "SELECT table_to_xml(N'pg_authid', true, true, '')"),
            ("SELECT table_to_xml('users'::regclass, true, true, '')", "SELECT table_to_xml('pg_authid'::regclass, true, true, '')"),
            ("SELECT table_to_xml(regclass 'users', true, true, '')", "SELECT table_to_xml(regclass 'pg_authid', true, true, '')"),
            ("SELECT query_to_xml('SELECT 1', true, true, '')", "SELECT query_to_xml('SELECT * FROM pg_authid', true, true, '')"),
            // Constant comparisons in other spellings
            ("DELETE FROM users WHERE 1 = 2", "DELETE FROM users WHERE 1 = 1"),
            ("DELETE FROM users WHERE 'a' = 'b'", "DELETE FROM users WHERE 'a' = E'\\x61'"),
            ("DELETE FROM users WHERE 'a' = 'b'", "DELETE FROM users WHERE 'a' = $$a$$"),
            ("DELETE FROM users WHERE 1.5 = 2.5", "DELETE FROM users WHERE 1.5 = 1.50"),
            ("DELETE FROM users WHERE B'1' = B'0'", "DELETE FROM users WHERE B'1' = B'1'"),
            ("DELETE FROM users WHERE X'1' = X'2'", "DELETE FROM users WHERE X'1' = X'1'"),
            ("DELETE FROM users WHERE -1 = -2", "DELETE FROM users WHERE -1 = -1"),
            ("DELETE FROM users WHERE 'f'::bool", "DELETE FROM users WHERE 't'::bool"),
            ("DELETE FROM users WHERE 'off'::bool", "DELETE FROM users WHERE 'on'::bool"),
            ("DELETE FROM users WHERE 0::bool", "DELETE FROM users WHERE 1::bool"),
            ("DELETE FROM users WHERE a + 1 = a + 2", "DELETE FROM users WHERE a + 1 = a + 1"),
            ("DELETE FROM users WHERE a::varchar(3) = a::varchar(4)", "DELETE FROM users WHERE a::varchar(3) = a::varchar(3)"),
            ("DELETE FROM users WHERE a[1] IS NULL OR a[2] IS NOT NULL", "DELETE FROM users WHERE a[1] IS NULL OR a[1] IS NOT NULL"),
            ("MERGE INTO users u USING s ON 1 = 2 WHEN MATCHED THEN DELETE", "MERGE INTO users u USING s ON 2 = 2 WHEN MATCHED THEN DELETE"),
            // Numbers followed by letters (`0x1F`, `1_000`, `1e`), however libpg_query reads them
            ("SELECT 0x1F FROM users WHERE id = 5", "SELECT 1x1F FROM users WHERE id = 5"),
            ("DELETE FROM users WHERE 1_000 = 2_000", "DELETE FROM users WHERE 1_000 = 1_000"),
            ("SELECT 1e FROM users", "SELECT 2e FROM users"),
            ("DELETE FROM users WHERE 1e5 = 2e5", "DELETE FROM users WHERE 1e5 = 100000.0"),
            // Typed literals
            ("SELECT interval '1' day FROM users WHERE id = 2", "SELECT interval '1 year' day FROM users WHERE id = 2"),
            ("SELECT 'users'::regclass", "SELECT 'pg_authid'::regclass"),
            ("SELECT * FROM pg_class WHERE oid = 'users'::regclass", "SELECT * FROM pg_class WHERE oid = 'pg_authid'::regclass"),
            // Settings
            ("SET statement_timeout = '5s'", "SET statement_timeout = 'off'"),
            ("SET TIME ZONE 'UTC'", "SET TIME ZONE 'Europe/Paris'"),
            ("SET search_path = 'app'", "SET search_path = 'pg_temp, public'"),
            ("SET transaction_read_only = 'on'", "SET transaction_read_only = 'off'"),
            ("SET ROLE 'app'", "SET ROLE 'postgres'"),
            ("SET extra_float_digits = -1", "SET extra_float_digits = -3"),
            ("BEGIN READ ONLY; DELETE FROM users WHERE id = 1", "BEGIN READ ONLY; DELETE FROM users WHERE id = 2"),
            ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; SELECT 1", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; SELECT 2"),
            // Strings that are not values
            ("COPY users TO '/tmp/a'", "COPY users TO '/etc/passwd'"),
            ("DO 'BEGIN PERFORM 1; END'", "DO 'BEGIN DELETE FROM users; END'"),
            ("DO $$BEGIN PERFORM 1; END$$", "DO $$BEGIN DELETE FROM users; END$$"),
            ("CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql", "CREATE FUNCTION f() RETURNS int AS 'DELETE FROM users RETURNING 1' LANGUAGE sql"),
            ("EXPLAIN (ANALYZE 'off') DELETE FROM users", "EXPLAIN (ANALYZE 'on') DELETE FROM users"),
            ("EXPLAIN (ANALYZE 0) DELETE FROM users", "EXPLAIN (ANALYZE 1) DELETE FROM users"),
            ("VACUUM (FULL 0) users", "VACUUM (FULL 1) users"),
            ("REINDEX (CONCURRENTLY 'on') TABLE users", "REINDEX (CONCURRENTLY 'off') TABLE users"),
            ("SELECT current_time(1)", "SELECT current_time(6)"),
            ("CREATE TABLE t (a float(10))", "CREATE TABLE t (a float(50))"),
            ("ALTER TABLE users ALTER COLUMN 1 SET STATISTICS 5", "ALTER TABLE users ALTER COLUMN 0 SET STATISTICS 5"),
            ("FETCH 1 FROM c", "FETCH 0 FROM c"),
            ("CREATE TRIGGER tr AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION f('a')", "CREATE TRIGGER tr AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION f('b')"),
            // Unicode escapes (never remembered by shape)
            ("SELECT U&'\\0041', 1", "SELECT U&'\\0042', 2"),
            ("SELECT U&'!0041' UESCAPE '!', 1", "SELECT U&'!0041' UESCAPE '#', 1"),
            ("SELECT U&\"a\" FROM users WHERE id = 1", "SELECT U&\"b\" FROM users WHERE id = 2"),
            // Multi-statement texts
            ("SELECT 1; SELECT 2", "SELECT 1; SELECT 1"),
            ("PREPARE p AS DELETE FROM users WHERE id = $1; EXECUTE p(1)", "PREPARE p AS DELETE FROM users WHERE id = $1; EXECUTE p(0)"),
            ("DELETE FROM users WHERE id = 1; DELETE FROM users WHERE 1 = 2", "DELETE FROM users WHERE id = 1; DELETE FROM users WHERE 2 = 2"),
            // Non-ASCII and long identifiers
            ("SELECT 'é' FROM users WHERE id = 1", "SELECT 'e\u{301}' FROM users WHERE id = 1"),
            ("SELECT 1 FROM \"pg_authid\" WHERE id = 1", "SELECT 2 FROM \"pg_authid\" WHERE id = 2"),
        ]
        for (a, b) in pairs {
            await Self.expectSame(prime: a, then: b, "hand-written")
        }
    }

    /// Settings: a shape remembered under one set of levels is not used under another.
    @Test("settings changes between A and B")
    func settingsChanges() async {
        let guardian = ActionGuard()
        let strict = GuardSettings(sqlLevels: ["write_data": .dangerous])
        _ = await guardian.classify(Action(kind: .sql, text: "DELETE FROM t WHERE id = 1"), settings: Self.settings)
        let b = await guardian.classify(Action(kind: .sql, text: "DELETE FROM t WHERE id = 2"), settings: strict)
        #expect(b == SQLClassifier(settings: strict).classify("DELETE FROM t WHERE id = 2"))
        let c = guardian.classifyInline(Action(kind: .sql, text: "DELETE FROM t WHERE id = 3"), settings: Self.settings)
        #expect(c == SQLClassifier().classify("DELETE FROM t WHERE id = 3"))
        // Interleaved settings, both ways in.
        for n in 0..<20 {
            let settings = n % 2 == 0 ? Self.settings : strict
            let text = "UPDATE t SET a = \(n) WHERE id = \(n + 1)"
            let answer = n % 3 == 0 ? guardian.classifyInline(Action(kind: .sql, text: text), settings: settings)
                : await guardian.classify(Action(kind: .sql, text: text), settings: settings)
            #expect(answer == SQLClassifier(settings: settings).classify(text), "\(text) under \(n % 2 == 0 ? "default" : "strict")")
        }
    }
}
