import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseServer
import GatehouseStore
import Logging
import GatehouseTestSupport
import Testing

@Suite("Anti-spam false positives and proxies")
struct AntiSpamHonestTests {
    /// 30 engineers, two weeks of working days, one to three requests a day each at office hours, with
    /// tickets and the reasons people actually write; approvers decide most of them.
    @Test("a realistic honest workload is never throttled, held or blocked")
    func honestWorkload() async throws {
        let engineers = (1...30).map { String(format: "e%02d", $0) }
        let policy = """
            version: 1
            principals:
            \(engineers.map { "  \($0): {groups: [engineers]}" }.joined(separator: "\n"))
              lead1: {groups: [dba]}
              lead2: {groups: [dba]}
            resources:
            \(["orders-db", "billing-db", "search-db", "prod-host", "billing-api"].map { """
              \($0):
                kind: generic
                roles:
                  read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}
                  write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 2h, allows: write}
            """ }.joined(separator: "\n"))
            pending_ttl: 24h
            antispam:
              limits: {per_source_ip: off}
            """
        let tasks = ["rebuild the orders index after the failed migration", "rotate the replica credentials before the audit",
                     "backfill missing invoices for the EU tenants", "investigate slow checkout queries reported by support",
                     "drop the temporary table left by yesterday's import", "restart the stuck payment worker",
                     "fix the broken search synonyms for German", "reprocess the webhook events that failed overnight",
                     "update the tax rates for the new quarter", "clean up orphaned sessions after the outage",
                     "verify the refund totals for finance", "apply the hotfix for the currency rounding bug"]
        // Seeded: the same workload on every run, so a failure can be reproduced.
        var generator = SplitMix64(state: 20_261_123)
        try await TestServer.with(policy: policy) { server in
            let approver = try await server.token(for: "lead1")
            var tokens: [String: String] = [:]
            for engineer in engineers { tokens[engineer] = try await server.token(for: engineer) }
            let start = server.clock.now()
            var outcomes: [String: Int] = [:]
            var filed = 0
            // Someone who was denied talks to the approver before asking for that resource again that day.
            var deniedToday: Set<String> = []
            for day in 0..<14 where day % 7 < 5 {
                deniedToday.removeAll()
                // Each engineer files one to three requests between 09:00 and 17:00 UTC.
                var plan: [(TimeInterval, String)] = []
                for engineer in engineers {
                    for _ in 0..<Int.random(in: 1...3, using: &generator) {
                        plan.append((TimeInterval(Int.random(in: 9 * 3600...17 * 3600, using: &generator)), engineer))
                    }
                }
                for (offset, engineer) in plan.sorted(by: { $0.0 < $1.0 }) {
                    let at = start.addingTimeInterval(TimeInterval(day * 86_400) + offset)
                    if at > server.clock.now() { server.clock.set(at) }
                    let resource = ["orders-db", "billing-db", "search-db", "prod-host", "billing-api"].randomElement(using: &generator)!
                    guard !deniedToday.contains(engineer + "/" + resource) else { continue }
                    let ticket = "\(["INC", "CHG", "OPS"].randomElement(using: &generator)!)-\(Int.random(in: 1000...9999, using: &generator))"
                    let reason = "\(ticket) \(tasks.randomElement(using: &generator)!) on \(resource)"
                    let reply = try await server.request(tokens[engineer]!, resource: resource, role: Bool.random(using: &generator) ? "read" : "write",
                                                         duration: "1h", reason: reason)
                    filed += 1
                    let state = reply.string("state") ?? "\(reply.status)"
                    outcomes[state, default: 0] += 1
                    #expect(reply.status == 201 || reply.status == 200, "\(engineer) day \(day): \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
                    if reply.status == 201, state == "pending", let id = reply.string("id") {
                        #expect(reply.json["approvals_required"] as? Int == 1, "extra approval for \(engineer): \(reason)")
                        let deny = Int.random(in: 0..<10, using: &generator) == 0
                        _ = try await server.send(.POST, "/v1/requests/\(id)/\(deny ? "deny" : "approve")", token: approver, json: ["comment": "ok"])
                        if deny { deniedToday.insert(engineer + "/" + resource) }
                    }
                }
            }
            #expect(filed > 400)
            #expect(outcomes["quarantined"] == nil, "\(outcomes)")
            let throttled = try await server.listPrincipals(TestServer.adminToken)
            #expect((throttled.json["principals"] as? [Any])?.isEmpty == true, "\(String(decoding: throttled.body, as: UTF8.self))")
            let scores = try await server.listAudit(TestServer.adminToken, limit: 10000)
            for action in ["principal.throttled", "request.extra_approval", "request.quarantined", "principal.blocked", "request.limited"] {
                let events = (scores.json["events"] as? [[String: Any]] ?? []).filter { $0["action"] as? String == action }
                #expect(events.isEmpty, "\(action) in an honest workload: \(events.prefix(3).map { $0["details"] ?? "" })")
            }
        }
    }

    @Test("seven separate write statements filed at once, each with its own ticket: the sixth and seventh meet the pending limit with a clear 429 and Retry-After, not a block")
    func pendingLimitIsAnAnswerNotABlock() async throws {
        let policy = AntiSpamTests.policy().replacingOccurrences(of: "\n  billing-api:",
                                                                 with: "\n    actions: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 15m}\n  billing-api:")
        #expect(policy.contains("actions: {requesters"))
        try await TestServer.with(policy: policy) { server in
            let alice = try await server.token(for: "alice")
            func file(_ order: Int) async throws -> TestServer.Reply {
                try await server.send(.POST, "/v1/requests", token: alice, json: [
                    "resource": "prod-db", "action": ["kind": "sql", "text": "UPDATE orders SET state = 'retry' WHERE id = \(order)"],
                    "reason": "INC-40\(order) order \(order) is stuck in processing since the outage"])
            }
            var answers: [TestServer.Reply] = []
            for order in 1...7 { answers.append(try await file(order)) }
            #expect(answers.map(\.status) == [201, 201, 201, 201, 201, 429, 429], "\(answers.map(\.json))")
            for refused in answers.suffix(2) {
                #expect(refused.string("code") == "rate_limited")
                #expect(refused.string("detail")?.contains("5 requests waiting (the limit is 5)") == true, "\(refused.json)")
                #expect(refused.headers.first(name: "Retry-After") != nil)
            }
            // Not blocked (a block would hold the five for review and end every grant): one cancelled, the next is filed.
            let blocked = try await server.send(.GET, "/v1/principals?blocked=true", token: TestServer.adminToken)
            #expect((blocked.json["principals"] as? [[String: Any]] ?? []).isEmpty, "\(blocked.json)")
            let first = try #require(answers[0].string("id"))
            #expect(try await server.send(.POST, "/v1/requests/\(first)/cancel", token: alice).status == 200)
            server.clock.advance(by: 120)
            #expect(try await file(6).status == 201)
        }
    }

    @Test("X-Forwarded-For is never trusted: malformed or spoofed values neither crash nor escape the per-address limit")
    func forwardedFor() async throws {
        let policy = AntiSpamTests.policy("""
              limits: {per_principal: off, per_source_ip: {rate: 60/h, burst: 3}}
              score: {thresholds: {throttle: 100, extra_approval: 100, quarantine: 100, block: 100}}
            """)
        try await TestServer.with(policy: policy) { server in
            let alice = try await server.token(for: "alice")
            var statuses: [Int] = []
            for (index, forwarded) in ["10.0.0.999", "not an address", String(repeating: "1.2.3.4, ", count: 500), "::ffff:1.2.3.4", "203.0.113.9"].enumerated() {
                let reply = try await server.send(.POST, "/v1/requests", token: alice,
                                                  json: ["resource": "prod-db", "role": "read", "duration": "\(10 + index)m", "reason": "INC-\(index) look at \(index)"],
                                                  headers: [("X-Forwarded-For", forwarded), ("Forwarded", "for=\"\(forwarded)\"")])
                statuses.append(reply.status)
            }
            #expect(statuses == [201, 201, 201, 429, 429], "\(statuses)")
        }
    }

    /// Behind a trusted reverse proxy (`--trusted-proxies`), the per-address limit is each client's, read from
    /// the end of X-Forwarded-For; what a client wrote before the proxy's entry changes nothing.
    @Test("behind a trusted proxy, X-Forwarded-For's last address is the client: each has its own per-address limit")
    func trustedForwardedFor() async throws {
        let policy = AntiSpamTests.policy("""
              limits: {per_principal: off, per_source_ip: {rate: 60/h, burst: 2}}
              score: {thresholds: {throttle: 100, extra_approval: 100, quarantine: 100, block: 100}}
            """)
        try await TestServer.with(policy: policy, trustedProxies: try TrustedProxies.parse("127.0.0.1")) { server in
            let alice = try await server.token(for: "alice")
            var step = 0
            func file(_ forwarded: String?) async throws -> Int {
                step += 1
                return try await server.send(.POST, "/v1/requests", token: alice,
                                             json: ["resource": "prod-db", "role": "read", "duration": "\(10 + step)m", "reason": "INC-\(step) look at \(step)"],
                                             headers: forwarded.map { [("X-Forwarded-For", $0)] } ?? []).status
            }
            // Two clients behind the proxy, each with its own burst of 2; a client's own spoofed entry comes first.
            let first = [try await file("203.0.113.9"), try await file("198.51.100.1, 203.0.113.9"), try await file("203.0.113.9")]
            let second = [try await file("192.0.2.55"), try await file("192.0.2.55")]
            // The proxy's own requests (no header) are the proxy's address.
            let proxy = [try await file(nil), try await file(nil), try await file(nil)]
            #expect(first == [201, 201, 429] && second == [201, 201] && proxy == [201, 201, 429], "\(first) \(second) \(proxy)")
        }
    }
}
