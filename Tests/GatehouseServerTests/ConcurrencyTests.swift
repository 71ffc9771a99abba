import Foundation
import GatehouseCore
import GatehouseStore
import Testing

/// Decisions are judged against the policy, clock and tokens as they are when the decision
/// commits, not as they were when the HTTP request arrived and waited for the writer.
@Suite("Decisions under contention")
struct ConcurrencyTests {
    /// Holds the store's writer lock until `release` is called, like a long write would.
    final class WriterHold: Sendable {
        let task: Task<Void, any Error>
        let (released, releaseContinuation) = AsyncStream<Void>.makeStream()

        init(_ server: TestServer) async throws {
            let (held, heldContinuation) = AsyncStream<Void>.makeStream()
            let released = self.released
            task = Task {
                try await server.service.store.write { _ in
                    heldContinuation.yield()
                    for await _ in released { break }
                }
            }
            for await _ in held { break }
        }

        func release() async throws {
            releaseContinuation.yield()
            try await task.value
        }
    }

    @Test("an approver removed from the policy while their approval waits for the writer is refused")
    func approverRemovedWhileWaiting() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "carol")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let hold = try await WriterHold(server)
            async let approval = server.approve(t["carol"]!, id)
            try await Task.sleep(for: .milliseconds(300)) // carol's approval is now queued behind the hold
            let updated = TestServer.policyYAML.replacingOccurrences(of: "carol: {groups: [dba]}", with: "carol: {groups: [engineers]}")
            try server.writePolicy(updated, reload: true)
            try await hold.release()
            let reply = try await approval
            // No longer an approver, carol can no longer see the request either.
            #expect(reply.status == 404)
            #expect(reply.string("code") == "request_not_found")
            #expect(try await server.check(t["alice"]!).string("decision") == "approval_required")
        }
    }

    @Test("an approval that waits past the pending deadline finds the request expired")
    func expiryWhileWaiting() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            server.clock.advance(by: 3599)
            let hold = try await WriterHold(server)
            async let approval = server.approve(t["bob"]!, id)
            try await Task.sleep(for: .milliseconds(300))
            server.clock.advance(by: 2) // the pending TTL (1h) passes while the approval waits
            try await hold.release()
            let reply = try await approval
            #expect(reply.status == 409)
            #expect(reply.string("code") == "request_expired")
        }
    }

    @Test("a requester removed from the policy while their request waits for the writer changes nothing")
    func requesterRemovedWhileWaiting() async throws {
        try await TestServer.with { server in
            let alice = try await server.token(for: "alice")
            let before = try await server.auditCount()
            let hold = try await WriterHold(server)
            async let request = server.request(alice)
            try await Task.sleep(for: .milliseconds(300))
            let updated = TestServer.policyYAML.replacingOccurrences(of: "  alice: {groups: [engineers]}\n", with: "")
            try server.writePolicy(updated, reload: true)
            try await hold.release()
            let reply = try await request
            #expect(reply.status == 401)
            #expect(try await server.auditCount() == before)
            let stored = try await server.service.store.read { try await $0.requests(.init(requester: "alice")) }
            #expect(stored.isEmpty)
        }
    }

    @Test("audit verify stays correct while events are being written")
    func verifyDuringWrites() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let writers = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<4 {
                        group.addTask {
                            for _ in 0..<15 {
                                let reply = try await server.request(t["alice"]!, role: "read", duration: "1h", reason: "look at slow queries")
                                #expect(reply.status == 201)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            var verifications = 0
            while !writers.isCancelled {
                let verify = try await server.verifyAudit(TestServer.adminToken)
                #expect(verify.json["ok"] as? Bool == true, "\(verify.json)")
                verifications += 1
                if verifications >= 20 { break }
            }
            try await writers.value
            let final = try await server.verifyAudit(TestServer.adminToken)
            #expect(final.json["ok"] as? Bool == true)
            #expect((final.json["events_checked"] as? Int ?? 0) >= 60 * 3)
        }
    }

    @Test("policy reloads are audited, accepted or refused; reserved names are refused")
    func reloadAudited() async throws {
        try await TestServer.with { server in
            #expect(try await server.reloadPolicy(TestServer.adminToken).json["reloaded"] as? Bool == true)
            let withAdmin = TestServer.policyYAML.replacingOccurrences(of: "  alice: {groups: [engineers]}", with: "  alice: {groups: [engineers]}\n  admin: {groups: [dba]}")
            try server.writePolicy(withAdmin)
            let refused = try await server.reloadPolicy(TestServer.adminToken)
            #expect(refused.json["reloaded"] as? Bool == false)
            #expect((refused.json["problems"] as? [String] ?? []).contains { $0.contains("`admin` is reserved") })
            let events = try await server.listAudit(TestServer.adminToken, limit: 1000)
            let reloads = (events.json["events"] as? [[String: Any]] ?? []).filter { ($0["action"] as? String)?.hasPrefix("policy.") == true }
            #expect(reloads.map { $0["action"] as? String } == ["policy.reloaded", "policy.reload_refused"])
            #expect(((reloads.first?["details"] as? [String: String])?["sha256"]?.count) == 64)
        }
    }

    @Test("a database file deleted under the running server fails closed")
    func deletedDatabaseFailsClosed() async throws {
        try await TestServer.with(store: .sqlite) { server in
            let alice = try await server.token(for: "alice")
            #expect(try await server.ready().status == 200)
            for suffix in ["", "-wal", "-shm"] {
                try? FileManager.default.removeItem(atPath: server.databasePath + suffix)
            }
            #expect(try await server.ready().status == 503)
            let request = try await server.request(alice)
            #expect(request.status == 503)
            #expect(request.headers.first(name: "content-type") == "application/problem+json")
            let check = try await server.check(alice)
            #expect(check.status == 503)
        }
    }
}
