import Foundation
import GatehouseCore
import Testing
@testable import GatehouseGuard

/// One line of a corpus file: `LEVEL [category,...] | TEXT`, with `⏎` standing for a newline.
struct CorpusEntry: Sendable, CustomTestStringConvertible {
    var level: RiskLevel
    var categories: [String]
    var text: String
    var line: Int
    /// A documented gap (`#! known gap: why` above the entry): the true level is written, and the
    /// test records the miss as a known issue, so fixing the gap shows up as a test to update.
    var knownGap: String?

    var testDescription: String { "line \(line): \(text.prefix(100))" }

    static func load(_ name: String) -> [CorpusEntry] {
        guard let url = Bundle.module.url(forResource: name, withExtension: "txt", subdirectory: "Corpus"),
              let content = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        var entries: [CorpusEntry] = []
        var gap: String?
        for (number, line) in content.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#! known gap:") {
                gap = String(trimmed.dropFirst("#! known gap:".count)).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#"), let separator = line.range(of: " | ") else { continue }
            let head = line[..<separator.lowerBound].split(separator: " ")
            guard let first = head.first, let level = RiskLevel(rawValue: String(first)) else {
                entries.append(CorpusEntry(level: .forbidden, categories: ["corpus line without a level"], text: String(line), line: number + 1))
                continue
            }
            let categories = head.dropFirst().flatMap { $0.split(separator: ",").map(String.init) }
            let text = String(line[separator.upperBound...]).replacingOccurrences(of: "⏎", with: "\n")
            entries.append(CorpusEntry(level: level, categories: categories, text: text, line: number + 1, knownGap: gap))
            gap = nil
        }
        return entries
    }

    static let sql = load("sql")
    static let shell = load("shell")
}

@Suite("Classifier corpora")
struct CorpusTests {
    @Test("the corpora are large enough to mean something")
    func sizes() {
        #expect(CorpusEntry.sql.count >= 300)
        #expect(CorpusEntry.shell.count >= 100)
        #expect(CorpusEntry.sql.filter { $0.level == .read }.count >= 50)
        #expect(CorpusEntry.sql.filter { $0.level == .dangerous }.count >= 100)
    }

    @Test("SQL statement has its true risk", arguments: CorpusEntry.sql)
    func sql(_ entry: CorpusEntry) async {
        let result = await ActionGuard().classify(Action(kind: .sql, text: entry.text), settings: GuardSettings())
        Self.judge(entry, result)
    }

    @Test("shell command has its true risk", arguments: CorpusEntry.shell)
    func shell(_ entry: CorpusEntry) async {
        let result = await ActionGuard().classify(Action(kind: .shell, text: entry.text), settings: GuardSettings())
        Self.judge(entry, result)
    }

    @Test("known gaps are few and each names its reason")
    func gaps() {
        let gaps = (CorpusEntry.sql + CorpusEntry.shell).filter { $0.knownGap != nil }
        #expect(gaps.count <= 10)
        #expect(gaps.allSatisfy { !($0.knownGap ?? "").isEmpty })
    }

    static func judge(_ entry: CorpusEntry, _ result: ActionClassification) {
        let check = {
            #expect(result.risk == entry.level, "findings: \(result.findings.map { "\($0.category)@\($0.position): \($0.detail)" })")
            for category in entry.categories {
                #expect(result.categories.contains(category), "expected \(category) among \(result.categories)")
            }
        }
        if let gap = entry.knownGap {
            withKnownIssue(Comment(rawValue: gap)) { check() }
        } else {
            check()
        }
    }
}
