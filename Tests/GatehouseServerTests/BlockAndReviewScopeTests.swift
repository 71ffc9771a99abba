import Foundation
import GatehouseCore
import Testing

@Suite("Blocks hold with anti-spam off; held requests are for reviewers and admins")
struct BlockAndReviewScopeTests {
    /// bob (an approver) reports alice's request: she is blocked and her waiting requests are held.
    func reported(_ server: TestServer, _ t: [String: String]) async throws -> (reported: String, other: String) {
        let reported = try #require(try await server.request(t["alice"]!, resource: "prod-db").string("id"))
        let other = try #require(try await server.request(t["alice"]!, resource: "prod-host", role: "operate",
                                                          reason: "INC-4412 restart the stuck worker").string("id"))
        let report = try await server.report(t["bob"]!, reported, comment: "alice is on leave")
        #expect(report.status == 200, "\(report.json)")
        return (reported, other)
    }

    @Test("with anti-spam off, a reported (blocked) principal still cannot file, not even a role granted at once")
    func blockHoldsWithAntiSpamOff() async throws {
        try await TestServer.with { server in   // the test policy says `antispam: {enabled: false}`
            let t = try await server.tokens("alice", "bob")
            _ = try await reported(server, t)
            let read = try await server.request(t["alice"]!, resource: "prod-db", role: "read", reason: "INC-4413 read the orders table")
            #expect(read.status == 403, "\(read.json)")
            #expect(read.string("code") == "principal_blocked")
        }
    }

    @Test("the bootstrap admin reviews held requests like any admin")
    func bootstrapAdminReviews() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let (_, other) = try await reported(server, t)
            let review = try await server.send(.POST, "/v1/requests/\(other)/review", token: TestServer.adminToken,
                                               json: ["decision": "reject", "comment": "checked with alice's manager"])
            #expect(review.status == 200, "\(review.json)")
            #expect(review.string("state") == "denied")
        }
    }

    @Test("approvers who are not reviewers do not see held requests in their list; reviewers do")
    func heldRequestsAreForReviewers() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "carol", "erin")
            let (_, other) = try await reported(server, t)
            let carol = try await server.listRequests(t["carol"]!, scope: .toApprove, state: .quarantined)
            #expect(carol.status == 200)
            #expect((carol.json["requests"] as? [[String: Any]] ?? []).isEmpty, "\(carol.json)")
            let erin = try await server.listRequests(t["erin"]!, scope: .all, state: .quarantined)
            let held = (erin.json["requests"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(held.contains(other), "\(erin.json)")
        }
    }
}
