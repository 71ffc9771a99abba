import AsyncHTTPClient
import Foundation
import GatehouseCore
import NIOCore
import NIOHTTP1
import Testing

@Suite("Webhook outbox: approver budgets and digests")
struct WebhookBudgetTests {
    @Test("a request is announced to the approvers within their budget; the others get it in one digest after the interval")
    func budgetAndDigest() async throws {
        let policy = TestServer.policyYAML.replacingOccurrences(
            of: "antispam: {enabled: false}",
            with: "antispam: {approver_notifications: {rate: 1/h, burst: 1}, blocked_delay: off}") + """

            notifications:
              base_url: https://gatehouse.example.com
              digest_interval: 10m
              webhooks:
                chat: {url: "http://127.0.0.1:9/hook", format: slack, events: [request.created, digest]}
            """
        try await TestServer.with(policy: policy) { server in
            let t = try await server.tokens("alice")
            // Start following the log (the first pass only notes where it begins).
            try await server.service.outbox.queueMessages()
            // write: approvers bob, carol, dave, frank (dba), each told at once: their budget is now spent.
            let first = try #require(try await server.request(t["alice"]!, role: "write").string("id"))
            // admin: the same four (over budget: digest) and erin (security, still within budget).
            let secondReply = try await server.request(t["alice"]!, role: "admin", reason: "INC-4411 rebuild the broken index")
            let second = try #require(secondReply.string("id"), "\(secondReply.status) \(String(decoding: secondReply.body, as: UTF8.self))")
            try await server.service.outbox.queueMessages()
            var deliveries = try await server.listDeliveries(TestServer.adminToken, limit: 100)
                .json["deliveries"] as? [[String: Any]] ?? []
            #expect(deliveries.count == 2, "\(deliveries)")
            #expect(deliveries.allSatisfy { $0["event"] as? String == "request.created" })

            let bodies = try await server.service.store.read { session in
                try await session.deliveries(limit: 100).map(\.body)
            }
            let firstBody = try #require(bodies.first { $0.contains(first) })
            let secondBody = try #require(bodies.first { $0.contains(second) })
            #expect(firstBody.contains("https://gatehouse.example.com/requests/\(first)"))
            #expect(secondBody.contains("https://gatehouse.example.com/requests/\(second)"))

            // Nothing is sent as a digest before the interval...
            #expect(try await server.service.outbox.flushDigests() == 0)
            server.clock.advance(by: 601)
            // ...then one digest per approver who was over budget, naming the request.
            #expect(try await server.service.outbox.flushDigests() == 4)
            #expect(try await server.service.outbox.flushDigests() == 0)
            try await server.service.outbox.queueMessages()
            deliveries = try await server.listDeliveries(TestServer.adminToken, limit: 100)
                .json["deliveries"] as? [[String: Any]] ?? []
            #expect(deliveries.filter { $0["event"] as? String == "digest" }.count == 4)
            let audit = try await server.listAudit(TestServer.adminToken, limit: 1000)
            let digests = (audit.json["events"] as? [[String: Any]] ?? []).filter { $0["action"] as? String == "notification.digest" }
            let recipients = digests.compactMap { ($0["details"] as? [String: String])?["recipient"] }.sorted()
            #expect(recipients == ["bob", "carol", "dave", "frank"])
            #expect(digests.allSatisfy { ($0["details"] as? [String: String])?["request_ids"] == second })
        }
    }
}
