import AsyncHTTPClient
import Foundation
import GatehouseCore
import NIOCore
import NIOHTTP1
import Testing

/// The test server's policy with break-glass turned on: dba members may take any role of
/// prod-db for at most 15 minutes, once a day; security is told.
let breakGlassPolicy = TestServer.policyYAML + """

    break_glass: {enabled: true, max_duration: 15m, rate: 1/d, requesters: [dba], notify: [security], review_required: true}
    """

@Suite("Break-glass over HTTP")
struct BreakGlassHTTPTests {
    static func use(_ server: TestServer, _ token: String, role: String = "admin", duration: String? = nil,
                    reason: String = "INC-9 primary is down, killing runaway queries") async throws -> TestServer.Reply {
        var body: [String: Any] = ["resource": "prod-db", "role": role, "reason": reason]
        if let duration { body["duration"] = duration }
        return try await server.send(.POST, "/v1/break-glass", token: token, json: body)
    }

    @Test("granted at once, marked, told to security, rate-limited, listed until reviewed by someone else, audited")
    func lifecycle() async throws {
        try await TestServer.with(policy: breakGlassPolicy) { server in
            let t = try await server.tokens("alice", "bob", "erin")
            #expect(try await server.check(t["bob"]!, role: "admin").string("decision") == "approval_required")

            let used = try await Self.use(server, t["bob"]!)
            #expect(used.status == 201, "\(String(decoding: used.body, as: UTF8.self))")
            let grantId = try #require(used.string("grant_id"))
            #expect(used.json["awaiting_review"] as? Bool == true)
            // Usable at once, without anyone approving.
            let check = try await server.check(t["bob"]!, role: "admin")
            #expect(check.string("decision") == "allow")
            #expect(check.string("grant_id") == grantId)
            let grant = try await server.readGrant(t["bob"]!, grantId)
            #expect(grant.json["break_glass"] as? Bool == true)
            let expires = try #require(grant.string("expires_at"))
            #expect(expires == server.clock.now().addingTimeInterval(15 * 60).rfc3339)

            // Everyone in `notify` (erin and dave) is told, outside the budget.
            var recipients: [String] = []
            for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
                let told = try await server.listNotifications(TestServer.adminToken, recipient: name, limit: 100)
                recipients += (told.json["notifications"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "break_glass" }
                    .compactMap { $0["recipient"] as? String }
            }
            #expect(recipients == ["dave", "erin"])

            // The rate: once a day per person.
            let again = try await Self.use(server, t["bob"]!)
            #expect(again.status == 429)
            #expect(again.string("code") == "break_glass_rate")
            #expect(again.headers.first(name: "Retry-After") != nil)

            // Listed until reviewed; the holder cannot review it; a non-reviewer does not even see it.
            let awaiting = try await server.listBreakGlass(t["erin"]!, awaitingReview: true)
            #expect((awaiting.json["uses"] as? [[String: Any]])?.map { $0["grant_id"] as? String } == [grantId])
            let others = try await server.listBreakGlass(t["alice"]!)
            #expect((others.json["uses"] as? [Any])?.isEmpty == true)
            let own = try await server.reviewBreakGlass(t["bob"]!, grantId, comment: "all fine")
            let outsider = try await server.reviewBreakGlass(t["alice"]!, grantId, comment: "fine by me")
            #expect(outsider.status == 404)
            #expect(own.status == 403)
            #expect(own.string("code") == "self_review")
            let empty = try await server.reviewBreakGlass(t["erin"]!, grantId, comment: " ")
            #expect(empty.status == 400)
            let reviewed = try await server.send(.POST, "/v1/break-glass/\(grantId)/review", token: t["erin"]!,
                                                 json: ["comment": "killed 3 queries, justified"])
            #expect(reviewed.status == 200)
            #expect(reviewed.string("reviewed_by") == "erin")
            let twice = try await server.reviewBreakGlass(TestServer.adminToken, grantId, comment: "again")
            #expect(twice.status == 409)
            let none = try await server.listBreakGlass(t["erin"]!, awaitingReview: true)
            #expect((none.json["uses"] as? [Any])?.isEmpty == true)

            let audit = try await server.listAudit(TestServer.adminToken, limit: 1000)
            let actions = (audit.json["events"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            for action in ["break_glass.used", "grant.started", "break_glass.refused", "break_glass.reviewed"] {
                #expect(actions.contains(action), "\(actions)")
            }
            #expect(try await server.verifyAudit(TestServer.adminToken).json["ok"] as? Bool == true)
        }
    }

    @Test("refused for those the policy does not allow, beyond the maximum duration, and when disabled")
    func refusals() async throws {
        try await TestServer.with(policy: breakGlassPolicy) { server in
            let t = try await server.tokens("alice", "bob", "carol", "deploy-bot")
            // alice may request admin but is not in dba; carol is in dba but may not request admin:
            // break_glass.requesters narrows the role's requesters, never widens them.
            for name in ["alice", "carol", "deploy-bot"] {
                let refused = try await Self.use(server, t[name]!)
                #expect(refused.status == 403, "\(name)")
                #expect(refused.string("code") == "not_allowed_break_glass", "\(name)")
            }
            let long = try await Self.use(server, t["bob"]!, duration: "1h")
            #expect(long.status == 422 && long.string("code") == "duration_over_maximum", "\(long.json)")
            #expect(long.string("field") == "duration")
            // A refusal for bad input does not spend the day's use.
            #expect(try await Self.use(server, t["bob"]!).status == 201)
            #expect(try await server.listGrants(TestServer.adminToken, scope: .all, limit: 100)
                .json["grants"].map { ($0 as? [Any])?.count } == 1)
        }
        try await TestServer.with { server in
            let t = try await server.tokens("bob")
            let disabled = try await Self.use(server, t["bob"]!)
            #expect(disabled.status == 403)
            #expect(disabled.string("code") == "break_glass_disabled")
        }
    }

    @Test("under concurrency the rate still allows exactly one use")
    func concurrentUses() async throws {
        try await TestServer.with(policy: breakGlassPolicy) { server in
            let token = try await server.token(for: "bob")
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<12 { group.addTask { try await Self.use(server, token).status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 201 }.count == 1, "\(statuses)")
            // The others are refused by the rate (429), or, on a loaded machine, by a store too busy to
            // take them in time (503: nothing written); never a second use.
            #expect(statuses.allSatisfy { [201, 429, 503].contains($0) }, "\(statuses)")
            #expect(statuses.contains(429), "\(statuses)")
            let grants = try await server.listGrants(TestServer.adminToken, scope: .all, limit: 100)
            #expect((grants.json["grants"] as? [Any])?.count == 1)
        }
    }
}
