import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing

/// A report blocks a person and takes access away: an approver reports what is in front of them
/// now, and takes away only what they could have refused; the rest waits for a reviewer.
@Suite("Report scope")
struct ReportScopeTests {
    static let policy = TestServer.policyYAML.replacingOccurrences(of: "guard:\n", with: """
          analytics:
            kind: generic
            roles:
              read: {requesters: [engineers], approvers: [security], approvals: 0, max_duration: 8h, allows: read}
        guard:

        """)

    @Test("an approver cannot report a request decided more than a day ago; a report revokes only grants on resources the reporter approves, the others are held for a reviewer")
    func scope() async throws {
        try await TestServer.with(policy: Self.policy) { server in
            let t = try await server.tokens("alice", "bob", "carol", "erin")
            let old = try #require(try await server.request(t["alice"]!, reason: "INC-60 fix the order rows").string("id"))
            #expect(try await server.approve(t["bob"]!, old).string("state") == "approved")
            server.clock.advance(by: 25 * 3600)
            let late = try await server.report(t["carol"]!, old, comment: "this looks odd")
            #expect(late.status == 409)
            #expect(late.string("code") == "not_reportable")

            // alice holds a grant on prod-db (carol approves there) and one on analytics (carol does not).
            let dbRead = try await server.request(t["alice"]!, role: "read", reason: "INC-61 look at the order rows")
            let onDB = try #require((dbRead.json["grant_id"] as? String) ?? (dbRead.json["grant"] as? [String: Any])?["id"] as? String)
            let analytics = try await server.request(t["alice"]!, resource: "analytics", role: "read", reason: "INC-61 compare the weekly numbers")
            let onAnalytics = try #require((analytics.json["grant_id"] as? String) ?? (analytics.json["grant"] as? [String: Any])?["id"] as? String)
            let pending = try #require(try await server.request(t["alice"]!, reason: "INC-62 fix more order rows").string("id"))
            let reported = try await server.report(t["carol"]!, pending, comment: "alice is on holiday")
            #expect(reported.status == 200)
            let grants = try await server.listGrants(TestServer.adminToken, scope: .all).json["grants"] as? [[String: Any]] ?? []
            let state = Dictionary(uniqueKeysWithValues: grants.compactMap { g in (g["id"] as? String).map { ($0, g["state"] as? String ?? "") } })
            #expect(state[onDB] == "revoked", "\(grants) \(onDB)")
            #expect(state[onAnalytics] == "active", "a grant carol could not have refused is held, not revoked: \(state)")
            // Held: unusable while alice is blocked.
            let check = try await server.check(t["alice"]!, resource: "analytics", role: "read")
            #expect(check.string("decision") == "deny")
            let events = try await server.listAudit(TestServer.adminToken, limit: 1000).json["events"] as? [[String: Any]] ?? []
            let report = events.last { $0["action"] as? String == "request.reported" }
            #expect((report?["details"] as? [String: String])?["held_grants"] == onAnalytics)
            let told = try await server.listNotifications(TestServer.adminToken, recipient: "erin").json["notifications"] as? [[String: Any]] ?? []
            #expect(told.contains { ($0["summary"] as? String ?? "").contains(onAnalytics) }, "the reviewer is told which grants wait for them: \(told)")
            // A reviewer's report revokes everything.
            let second = try #require(try await server.request(t["bob"]!, resource: "analytics", role: "read", reason: "INC-63 weekly numbers").json["grant_id"] as? String)
            let bobs = try #require(try await server.request(t["bob"]!, reason: "INC-64 fix the order rows").string("id"))
            #expect(try await server.report(t["erin"]!, bobs, comment: "bob's account looks taken over").status == 200)
            let after = try await server.listGrants(TestServer.adminToken, scope: .all).json["grants"] as? [[String: Any]] ?? []
            #expect(after.first { $0["id"] as? String == second }?["state"] as? String == "revoked")
        }
    }
}
