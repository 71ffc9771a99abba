import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing
@testable import GatehouseGuard

/// Random and mutated SQL for the classifier. The test command runs `GATEHOUSE_FUZZ_INPUTS`
/// inputs (20,000 by default); `GATEHOUSE_FUZZ_INPUTS=1000000 swift test --filter Fuzz` is the long run.
enum SQLFuzzer {
    static let vocabulary = [
        "SELECT", "DELETE", "FROM", "WHERE", "DROP", "TABLE", "UPDATE", "SET", "INSERT", "INTO", "VALUES", "WITH", "AS", "(", ")",
        ";", ",", "'", "\"", "$$", "$a$", "--", "/*", "*/", "E'\\\\'", "U&\"\\0061\"", "1", "=", "OR", "AND", "NOT", "true", "x", "t",
        "pg_authid", "pg_terminate_backend(1)", "DO", "BEGIN", "END", "EXECUTE", "PREPARE", "COPY", "PROGRAM", "EXPLAIN", "ANALYZE",
        "CREATE", "FUNCTION", "RULE", "TRIGGER", "LANGUAGE", "plpgsql", "sql", "RETURNS", "void", "MERGE", "USING", "ON", "\n", "\t",
        "ARRAY[", "]", "::", "int", "CASE", "WHEN", "THEN", "ELSE", "||", "+", "-", "*", "%", "\\", "\u{0}", "é", "😀", "\u{202E}",
    ]

    static func random(_ rng: inout SplitMix64) -> String {
        let count = Int.random(in: 1...40, using: &rng)
        return (0..<count).map { _ in vocabulary.randomElement(using: &rng)! }.joined(separator: Bool.random(using: &rng) ? " " : "")
    }

    static func mutate(_ seed: String, _ rng: inout SplitMix64) -> String {
        var bytes = Array(seed.utf8)
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let at = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
            switch Int.random(in: 0..<7, using: &rng) {
            case 0: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: at)
            case 1: if !bytes.isEmpty { bytes.remove(at: at) }
            case 2: bytes.insert(contentsOf: Array(vocabulary.randomElement(using: &rng)!.utf8), at: at)
            case 3:
                let end = min(bytes.count, at + Int.random(in: 1...20, using: &rng))
                bytes.insert(contentsOf: bytes[at..<end], at: at)
            case 4: if !bytes.isEmpty { bytes[at] = bytes[Int.random(in: 0..<bytes.count, using: &rng)] }
            case 5:
                let depth = Int.random(in: 10...3_000, using: &rng)
                bytes.insert(contentsOf: Array((String(repeating: "(", count: depth) + "1" + String(repeating: ")", count: depth)).utf8), at: at)
            default:
                bytes.insert(contentsOf: Array(String(repeating: "x", count: Int.random(in: 100...20_000, using: &rng)).utf8), at: at)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

@Suite("Classifier fuzzing")
struct FuzzTests {
    /// Threads of the fuzz runs' own: each run is one long job, and on the shared threads it would hold
    /// up every other suite's classifications (the test servers use the shared ones) for a minute.
    static let threads = ParserThreads(count: 2)

    static var inputs: Int {
        Int(ProcessInfo.processInfo.environment["GATEHOUSE_FUZZ_INPUTS"] ?? "") ?? 20_000
    }

    @Test("random and mutated SQL never crashes, hangs or gives an inconsistent answer")
    func fuzzSQL() async {
        let seeds = CorpusEntry.sql.map(\.text)
        let total = Self.inputs
        let failures = await Self.threads.run { () -> [String] in
            var rng = SplitMix64(state: 0x6A7E_4015)
            let classifier = SQLClassifier()
            var failures: [String] = []
            for index in 0..<total {
                let text = index % 3 == 0 || seeds.isEmpty
                    ? SQLFuzzer.random(&rng)
                    : SQLFuzzer.mutate(seeds[index % seeds.count], &rng)
                let result = classifier.classify(text)
                let size = text.utf8.count
                if result.findings.isEmpty != (result.risk == .read) || result.findings.contains(where: { $0.position < 0 || $0.position > size }) {
                    failures.append("input \(index): \(text.prefix(200)) -> \(result.findings)")
                }
                if text.utf8.contains(0), result.risk < .dangerous {
                    failures.append("input \(index) with a NUL byte classified \(result.risk)")
                }
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    @Test("dangerous statements stay dangerous inside a transaction or after a harmless statement")
    func wrapping() async {
        let dangerous = CorpusEntry.sql.filter { $0.level == .dangerous && $0.knownGap == nil && !$0.categories.contains("unparseable") }
        for entry in dangerous {
            for wrapped in ["SELECT 1;\n" + entry.text, "BEGIN;\n" + entry.text + "\n;\nCOMMIT;", "/* note */ " + entry.text] {
                let result = await ActionGuard().classify(Action(kind: .sql, text: wrapped), settings: GuardSettings())
                #expect(result.risk >= .dangerous, "line \(entry.line) wrapped as \(wrapped.prefix(120)) gave \(result.risk)")
            }
        }
    }

    @Test("random shell command lines never crash the shell classifier")
    func fuzzShell() async {
        let seeds = CorpusEntry.shell.map(\.text)
        let total = Self.inputs / 2
        let inconsistent = await Self.threads.run { () -> Int in
            var rng = SplitMix64(state: 0x5E11)
            let classifier = ShellClassifier()
            var inconsistent = 0
            for index in 0..<total where !seeds.isEmpty {
                let text = SQLFuzzer.mutate(seeds[index % seeds.count], &rng)
                let result = classifier.classify(text)
                if result.findings.isEmpty != (result.risk == .read) { inconsistent += 1 }
            }
            return inconsistent
        }
        #expect(inconsistent == 0)
    }
}
