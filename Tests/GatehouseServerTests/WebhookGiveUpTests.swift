import AsyncHTTPClient
import Foundation
import GatehouseCore
import NIOCore
import NIOHTTP1
import Testing

@Suite("Webhook outbox: giving up")
struct WebhookGiveUpTests {
    /// A server whose policy sends the three events of a request's life to an endpoint nobody answers
    /// (`retry` given), with alice's request filed and approved by bob after the outbox's cursor was set.
    static func withApprovedRequest(retry: String? = nil, _ body: (TestServer, [String: String]) async throws -> Void) async throws {
        let policy = TestServer.policyYAML + """

            notifications:
            \(retry.map { "  retry: \($0)\n" } ?? "")  webhooks:
                chat: {url: "http://127.0.0.1:9/hook", format: slack, events: [request.created, request.approved, grant.started]}
            """
        try await TestServer.with(policy: policy) { server in
            let t = try await server.tokens("alice", "bob")
            try await server.service.outbox.queueMessages()
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            _ = try await server.approve(t["bob"]!, id)
            try await body(server, t)
        }
    }

    @Test("a round claims the messages it queues, up to what it may send: the rest wait, due, for the next round's claim, and none is claimed twice")
    func claimsWhatItQueues() async throws {
        try await Self.withApprovedRequest { server, _ in
            let service = server.service
            let (events, claimed) = try await service.outbox.queueMessages(limit: 64, claimFor: 30, claimAtMost: 2)
            #expect(events >= 3)
            #expect(claimed.count == 2)
            let rest = try await service.outbox.claimDeliveries(lease: 30)
            #expect(rest.count == 1, "the message not claimed on queueing is due at once")
            #expect(Set((claimed + rest).map(\.event)) == ["request.created", "request.approved", "grant.started"])
            #expect(try await service.outbox.claimDeliveries(lease: 30).isEmpty, "all three are claimed")
            server.clock.advance(by: 31)
            // A round with nothing new still claims what is due (claims that ran out), in the same write, up to its room.
            let again = try await service.outbox.queueMessages(limit: 64, claimFor: 30, claimAtMost: 2, claimDue: true)
            #expect(again.events == 0 && again.claimed.count == 2)
            #expect(try await service.outbox.claimDeliveries(lease: 30).count == 1, "the third is left for the next claim")
        }
    }

    @Test("after the last attempt, on 410 Gone, or when the endpoint left the policy, a message is given up and audited")
    func givesUp() async throws {
        try await Self.withApprovedRequest(retry: "{initial: 1s, max: 1s, attempts: 2}") { server, t in
            let service = server.service
            try await service.outbox.queueMessages()
            var due = try await service.outbox.claimDeliveries(lease: 30)
            #expect(due.count == 3)
            // Claimed: nobody else takes them while the attempt runs.
            #expect(try await service.outbox.claimDeliveries(lease: 30).isEmpty)
            let byEvent = Dictionary(uniqueKeysWithValues: due.map { ($0.event, $0) })
            try await service.outbox.recordAttempts([
                .init(delivery: byEvent["request.created"]!, status: 500, error: nil),
                .init(delivery: byEvent["request.approved"]!, status: 410, error: nil),
                .init(delivery: byEvent["grant.started"]!, status: nil, error: "connection refused"),
            ])
            // Not due before the backoff has passed...
            #expect(try await service.outbox.claimDeliveries(lease: 30).isEmpty)
            server.clock.advance(by: 2)
            due = try await service.outbox.claimDeliveries(lease: 30)
            #expect(Set(due.map(\.event)) == ["request.created", "grant.started"])
            try await service.outbox.recordAttempts(due.map { .init(delivery: $0, status: 503, error: nil) })
            server.clock.advance(by: 5)
            #expect(try await service.outbox.claimDeliveries(lease: 30).isEmpty)

            let rows = try await server.listDeliveries(TestServer.adminToken).json["deliveries"] as? [[String: Any]] ?? []
            #expect(rows.count == 3)
            #expect(rows.allSatisfy { $0["state"] as? String == "failed" }, "\(rows)")
            let audit = try await server.listAudit(TestServer.adminToken, limit: 1000)
            let failed = (audit.json["events"] as? [[String: Any]] ?? []).filter { $0["action"] as? String == "webhook.failed" }
            #expect(failed.count == 3)
            #expect(try await server.listDeliveries(t["alice"]!).status == 403)

            // A message for an endpoint that left the policy is given up at its next attempt.
            let second = try #require(try await server.request(t["alice"]!, resource: "prod-host", role: "operate").string("id"))
            try await service.outbox.queueMessages()
            try server.writePolicy(TestServer.policyYAML, reload: true)
            let orphaned = try await service.outbox.claimDeliveries(lease: 30)
            #expect(orphaned.count == 1)
            #expect(orphaned.first?.event == "request.created")
            #expect(orphaned.first?.body.contains("prod-host/operate") == true, "\(second)")
            try await service.outbox.recordAttempts(orphaned.map { .init(delivery: $0, status: nil, error: "not sent") })
            let last = try await server.listDeliveries(TestServer.adminToken, limit: 1).json["deliveries"] as? [[String: Any]]
            #expect(last?.first?["last_status"] as? String == "endpoint no longer in the policy")
        }
    }
}
