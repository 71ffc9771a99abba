import Foundation
import GatehouseCore
import GatehouseStore
import GatehouseTestSupport
import Synchronization
import Testing

/// Export, import and audit verification that read a store or a file a piece at a time.
@Suite("Streamed export, import and audit verification")
struct StreamedTransferTests {
    @Test("a file's lines come back exactly, across chunk boundaries, with or without a final newline")
    func fileLines() throws {
        var generator = SystemRandomNumberGenerator()
        for finalNewline in [true, false] {
            var lines: [String] = []
            for index in 0..<3_000 {
                let length = Int.random(in: 0...200, using: &generator)
                lines.append(index % 97 == 0 ? "" : String(repeating: "é", count: length / 2) + "\(index)")
            }
            let text = lines.joined(separator: "\n") + (finalNewline ? "\n" : "")
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("lines-\(UUID().uuidString)").path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }
            // A chunk of 1,000 bytes splits lines, and the two-byte é, everywhere.
            let reader = FileLines(try #require(FileHandle(forReadingAtPath: path)), chunk: 1_000)
            var read: [String] = []
            while let line = try reader.next() { read.append(line) }
            #expect(read == lines, "final newline: \(finalNewline)")
        }
    }

    @Test("an import read line by line from a file commits nothing when the file is cut off, and everything when it is whole")
    func importFromAFile() async throws {
        try await StoreQueryTests.with(.sqlite) { source, _ in
            try await source.write { session in
                for batch in 0..<3 {
                    try await session.appendAudit((0..<1_000).map { AuditEntry(actor: "alice", action: "request.created", subject: "req_\(batch)_\($0)") },
                                                  at: StoreQueryTests.t0)
                }
            }
            let lines = Mutex([String]())
            _ = try await StoreTransfer.export(source) { line in lines.withLock { $0.append(line) } }
            let exported = lines.withLock { $0 }
            #expect(exported.count == 3_003, "header, 3,000 events, the head, the end line")
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            func importing(_ text: String, anchors: [AuditChain.Anchor] = []) async throws -> (StoreTransfer.Summary?, Int) {
                let path = folder.appendingPathComponent("export-\(UUID().uuidString).jsonl").path
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                let reader = FileLines(try #require(FileHandle(forReadingAtPath: path)))
                let target = try await GatehouseStore.open(url: "sqlite:" + folder.appendingPathComponent("\(UUID().uuidString).db").path)
                let summary = try? await StoreTransfer.import(target, anchors: anchors, next: { try reader.next() })
                let stored = try await target.read { try await $0.rowCounts() }.values.reduce(0, +)
                await target.close()
                return (summary, stored)
            }
            // Cut in the middle of a line, and at a line boundary before the end line.
            let whole = exported.joined(separator: "\n") + "\n"
            let cutMidLine = String(whole.prefix(whole.count / 2))
            let cutAtLine = exported.dropLast().joined(separator: "\n") + "\n"
            for cut in [cutMidLine, cutAtLine] {
                let (summary, stored) = try await importing(cut)
                #expect(summary == nil && stored == 0, "a cut-off file wrote \(stored) rows")
            }
            let (summary, stored) = try await importing(whole)
            #expect(summary?.auditEvents == 3_000 && stored == 3_001, "\(String(describing: summary)), \(stored) rows")

            // The newest event taken out, the head and the row count made to match: the chain alone verifies; an
            // anchor kept from the source (its head, or the event's webhook id) refuses the file.
            func object(_ line: String) throws -> [String: Any] { try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) }
            func line(_ object: [String: Any]) throws -> String { String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self) }
            var cut = exported
            let headIndex = try #require(cut.firstIndex { $0.contains("\"audit_head\"") })
            let newestIndex = try #require(cut.lastIndex { $0.contains("\"audit_events\"") })
            let newest = try object(cut[newestIndex]), before = try object(cut[newestIndex - 1])
            func row(_ object: [String: Any]) -> [String: Any] { object["row"] as? [String: Any] ?? [:] }
            let source = try #require(AuditChain.Anchor("\(row(newest)["seq"] ?? ""):\(row(newest)["hash"] ?? "")"))
            var head = try object(cut[headIndex])
            var headRow = row(head)
            headRow["seq"] = row(before)["seq"]
            headRow["hash"] = row(before)["hash"]
            head["row"] = headRow
            cut[headIndex] = try line(head)
            var end = try object(cut[cut.count - 1])
            end["rows"] = (end["rows"] as? Int ?? 0) - 1
            cut[cut.count - 1] = try line(end)
            cut.remove(at: newestIndex)
            let shortened = cut.joined(separator: "\n") + "\n"
            let (alone, _) = try await importing(shortened)
            #expect(alone?.auditEvents == 2_999, "the cut file imports when nothing outside it is known: \(String(describing: alone))")
            for anchor in [source, try #require(AuditChain.Anchor("msg_\(source.seq)_\(source.hash.prefix(16))"))] {
                let (anchored, written) = try await importing(shortened, anchors: [anchor])
                #expect(anchored == nil && written == 0, "\(anchor)")
            }
            #expect(try await importing(whole, anchors: [source]).0?.auditEvents == 3_000)
        }
    }

    @Test("the audit chain is verified page by page: a change in a late page is found, with its seq")
    func verificationAcrossPages() async throws {
        try await StoreQueryTests.with(.sqlite) { store, database in
            try await store.write { session in
                for _ in 0..<12 {
                    try await session.appendAudit((0..<1_000).map { AuditEntry(actor: "alice", action: "grant.checked", subject: "grt_\($0)") },
                                                  at: StoreQueryTests.t0)
                }
            }
            let whole = try await store.read { try await $0.verifyAuditChain() }
            #expect(whole.ok && whole.eventsChecked == 12_000)
            try await database.tamper("UPDATE audit_events SET actor = 'mallory' WHERE seq = 11007")
            let broken = try await store.read { try await $0.verifyAuditChain() }
            #expect(!broken.ok && broken.brokenAt == 11_007 && broken.eventsChecked == 11_006, "\(broken)")
        }
    }
}

/// The read cache on PostgreSQL, where other instances write too.
@Suite("PostgreSQL: cached answers follow every instance's writes")
struct SharedCacheTests {
    @Test("an instance answers from its cache until a change is counted (by another instance, or by plain SQL), then reads again; with the counter unreadable it reads every time")
    func cacheFollowsTheCounter() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-cache-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let database = try await TestDatabase.fresh(.postgres, folder: folder)
        let one = try await database.open(logger: .init(label: "one"))
        let two = try await database.open(logger: .init(label: "two"))
        func blocked(_ store: GatehouseStore, _ principal: String = "mallory") async throws -> Bool {
            try await store.isBlocked(principal: principal)
        }
        // Instance two reads "not blocked" and keeps the answer. With the counter's trigger switched off, a change
        // is not seen: the cache is in use. It is used only while the watch looked within half a second, which a
        // loaded machine can miss once; then the answer is read again (and kept): another principal is tried.
        try await Task.sleep(for: .milliseconds(300))
        try await database.tamper("ALTER TABLE principal_flags DISABLE TRIGGER principal_flags_count_change")
        var servedFromCache = false
        for attempt in 0..<20 where !servedFromCache {
            let principal = attempt == 0 ? "mallory" : "mallory\(attempt)"
            #expect(try await blocked(two, principal) == false)
            try await database.tamper("INSERT INTO principal_flags (principal, blocked_at, blocked_by, block_reason) VALUES (\(bind: principal), 1, 'test', 'x')")
            servedFromCache = try await blocked(two, principal) == false
            if !servedFromCache { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(servedFromCache, "the answer was read again with nothing counted: the cache is not in use")
        // With it on, any change is counted, an operator's own SQL included: instance two reads again.
        try await database.tamper("ALTER TABLE principal_flags ENABLE TRIGGER principal_flags_count_change")
        try await database.tamper("UPDATE principal_flags SET block_reason = 'confirmed' WHERE principal = 'mallory'")
        #expect(try await waitUntil(timeout: .seconds(5)) { try await blocked(two) }, "instance two kept its answer after a counted change")
        // A write through instance one is seen by instance two.
        #expect(try await blocked(two, "eve") == false)
        try await one.write { try await $0.block("eve", by: "test", reason: "reported", at: Date()) }
        #expect(try await waitUntil(timeout: .seconds(5)) { try await blocked(two, "eve") }, "instance two kept its answer after instance one wrote")
        // With the counter's row gone (its watch cannot look), instance two reads every time after half a second.
        try await database.tamper("ALTER TABLE principal_flags DISABLE TRIGGER principal_flags_count_change")
        try await database.tamper("DELETE FROM store_changes")
        try await database.tamper("DELETE FROM principal_flags WHERE principal = 'mallory'")
        #expect(try await waitUntil(timeout: .seconds(5)) { try await blocked(two) == false }, "instance two answered from its cache with its watch blind")
        await one.close()
        await two.close()
        await database.drop()
    }
}
