import Foundation
import GatehouseCore
import GatehouseStore
import Testing

@Suite("Writer queue")
struct WriterQueueTests {
    @Test("a write that cannot get the writer within its deadline fails with store_busy and changes nothing")
    func writeDeadline() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-lock-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try await GatehouseStore.openSQLite(path: folder.appendingPathComponent("g.db").path, writeWait: .milliseconds(300))
        let (held, heldContinuation) = AsyncStream<Void>.makeStream()
        let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await store.write { _ in
                heldContinuation.yield()
                for await _ in release { break }
            }
        }
        for await _ in held { break }
        do {
            try await store.write { session in
                try await session.appendAudit([AuditEntry(actor: "t", action: "x", subject: "s")], at: Date())
            }
            Issue.record("the write did not time out")
        } catch let error as GatehouseError {
            #expect(error.code == "store_busy")
            #expect(error.kind == .unavailable)
        }
        releaseContinuation.yield()
        try await holder.value
        // The lock is usable again, and the timed-out write left nothing behind.
        try await store.write { session in
            try await session.appendAudit([AuditEntry(actor: "t", action: "y", subject: "s")], at: Date())
        }
        let events = try await store.read { try await $0.auditEvents(.init()) }
        #expect(events.map(\.action) == ["y"])
        await store.close()
    }
}
