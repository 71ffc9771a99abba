import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing

/// An approval counts only while its approver keeps their standing: reported (blocked) since, or
/// their token revoked by an admin, and it no longer counts when the final approval arrives.
@Suite("Approvals from approvers who lost their standing")
struct ApprovalStandingTests {
    @Test("an approver whose token an admin revokes, or who is blocked, no longer counts toward the threshold; the audit says who was not counted")
    func lostStanding() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "carol", "dave", "frank", "erin")
            // Revoked token: alice asks for `admin` (two approvals); bob approves, then an admin revokes bob's token.
            let first = try #require(try await server.request(t["alice"]!, role: "admin", reason: "INC-51 rebuild the broken index").string("id"))
            #expect(try await server.approve(t["bob"]!, first).string("state") == "pending")
            let tokens = try await server.listTokens(TestServer.adminToken).json["tokens"] as? [[String: Any]] ?? []
            let bobToken = try #require(tokens.first { $0["principal"] as? String == "bob" }?["id"] as? String)
            #expect(try await server.revokeToken(TestServer.adminToken, bobToken).status == 200)
            let afterCarol = try await server.approve(t["carol"]!, first)
            #expect(afterCarol.status == 200)
            #expect(afterCarol.string("state") == "pending", "bob's approval no longer counts: carol's is the first that does")
            let approved = try await server.approve(t["frank"]!, first)
            #expect(approved.string("state") == "approved")

            // The approver whose token was revoked approves again with a valid one: that replaces the
            // approval that no longer counted (the request was stuck without it: bob could not decide again).
            let bobA = try await server.token(for: "bob")
            let fourth = try #require(try await server.request(t["alice"]!, role: "admin", reason: "INC-55 rebuild a fourth index").string("id"))
            #expect(try await server.approve(bobA, fourth).string("state") == "pending")
            #expect(try await server.approve(bobA, fourth).string("code") == "already_decided_by_you", "one that counts is not replaced")
            #expect(try await server.revokeSessions(TestServer.adminToken, "bob").status == 200)
            let byErin = try await server.approve(t["erin"]!, fourth)
            #expect(byErin.string("state") == "pending", "bob's approval does not count")
            // Shown as such: the API marks it (in the approval's answer and the request's), and `show` counts 1 of 2.
            func marks(_ reply: TestServer.Reply) -> [String] {
                (reply.json["approvals"] as? [[String: Any]] ?? []).map { "\($0["approver"] ?? "") \(($0["counted"] as? Bool).map { "\($0)" } ?? "absent")" }.sorted()
            }
            #expect(marks(byErin) == ["bob false", "erin absent"], "\(marks(byErin))")
            let shown = try await server.send(.GET, "/v1/requests/\(fourth)", token: t["alice"]!)
            #expect(marks(shown) == ["bob false", "erin absent"], "\(marks(shown))")
            let show = try await Command.run(try ServeProcess.binary().path, ["show", fourth],
                                             environment: ["GATEHOUSE_URL": server.baseURL, "GATEHOUSE_TOKEN": t["alice"]!])
            #expect(show.status == 0 && show.stdout.contains("1 of 2 required") && show.stdout.contains("bob approve (no longer counts)"), "\(show)")
            var browser = Browser(baseURL: server.baseURL)
            _ = try await browser.signIn(t["carol"]!)
            let page = try await browser.get("/requests/\(fourth)")
            #expect(page.status == 200 && page.html.contains("1 of 2 needed") && page.html.contains("(no longer counts"), "\(page.html)")
            let bobB = try await server.token(for: "bob")
            // It waits for bob again: in his list to approve (it was hidden as decided).
            let waiting = (try await server.listRequests(bobB, scope: .toApprove).json["requests"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(waiting.contains(fourth), "\(waiting)")
            let waitingA = (try await server.listRequests(t["carol"]!, scope: .toApprove).json["requests"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(waitingA.contains(fourth), "carol has not decided it: \(waitingA)")
            let again = try await server.approve(bobB, fourth)
            #expect(again.status == 200 && again.string("state") == "approved", "\(again.status) \(String(decoding: again.body, as: UTF8.self))")
            let rows = (again.json["approvals"] as? [[String: Any]] ?? []).compactMap { $0["approver"] as? String }.sorted()
            #expect(rows == ["bob", "erin"], "one person is one approval: \(rows)")
            let replaced = (try await server.listAudit(TestServer.adminToken, limit: 1000).json["events"] as? [[String: Any]] ?? [])
                .first { $0["action"] as? String == "request.approved" && $0["subject"] as? String == fourth }
            #expect(((replaced?["details"] as? [String: String])?["replaces"] ?? "").contains("whose token was revoked since"), "\(String(describing: replaced))")
            #expect((replaced?["details"] as? [String: String])?["replaced_token"]?.hasPrefix("tok_") == true, "the replaced approval's token is kept in the log")

            // Blocked: bob (a new token) approves alice's second request, then is reported and blocked.
            let bob = try await server.token(for: "bob")
            let second = try #require(try await server.request(t["alice"]!, resource: "prod-db", role: "admin", reason: "INC-52 rebuild another index").string("id"))
            #expect(try await server.approve(bob, second).string("state") == "pending")
            let bobs = try #require(try await server.request(bob, role: "write", reason: "INC-53 fix the order rows").string("id"))
            #expect(try await server.report(t["carol"]!, bobs, comment: "bob never works on orders").status == 200)
            let afterDave = try await server.approve(t["dave"]!, second)
            #expect(afterDave.string("state") == "pending", "a blocked approver's approval no longer counts")
            #expect(try await server.approve(t["erin"]!, second).string("state") == "approved")
            let events = try await server.listAudit(TestServer.adminToken, limit: 1000).json["events"] as? [[String: Any]] ?? []
            let notCounted = events.filter { $0["action"] as? String == "request.approved" }.compactMap { ($0["details"] as? [String: String])?["not_counted"] }
            #expect(notCounted == ["bob", "bob"])

            // Control: two approvers in good standing approve it.
            let third = try #require(try await server.request(t["alice"]!, role: "admin", reason: "INC-54 rebuild a third index").string("id"))
            #expect(try await server.approve(t["carol"]!, third).string("state") == "pending")
            #expect(try await server.approve(t["dave"]!, third).string("state") == "approved")
        }
    }

    @Test("an approver taken out of the approver group by a policy reload no longer counts while the request waits, and is said as such (API, show, audit)")
    func approverLeftTheGroup() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "carol", "dave", "frank")
            let id = try #require(try await server.request(t["alice"]!, role: "admin", reason: "INC-61 rebuild the broken index").string("id"))
            #expect(try await server.approve(t["carol"]!, id).string("state") == "pending")
            // carol leaves dba (stays in the policy).
            let moved = TestServer.policyYAML.replacingOccurrences(of: "  carol: {groups: [dba]}\n", with: "  carol: {groups: [engineers]}\n")
            #expect(moved != TestServer.policyYAML)
            try server.writePolicy(moved)
            #expect(try await server.reloadPolicy(TestServer.adminToken).json["reloaded"] as? Bool == true)
            let shown = try await server.send(.GET, "/v1/requests/\(id)", token: t["alice"]!)
            let marks = (shown.json["approvals"] as? [[String: Any]] ?? []).map { "\($0["approver"] ?? "") \(($0["counted"] as? Bool).map { "\($0)" } ?? "absent")" }
            #expect(marks == ["carol false"], "\(marks)")
            let show = try await Command.run(try ServeProcess.binary().path, ["show", id],
                                             environment: ["GATEHOUSE_URL": server.baseURL, "GATEHOUSE_TOKEN": t["alice"]!])
            #expect(show.status == 0 && show.stdout.contains("0 of 2 required") && show.stdout.contains("carol approve (no longer counts)"), "\(show)")
            #expect(try await server.approve(t["dave"]!, id).string("state") == "pending", "carol's approval does not count")
            #expect(try await server.approve(t["frank"]!, id).string("state") == "approved")
            let events = try await server.listAudit(TestServer.adminToken, limit: 1000).json["events"] as? [[String: Any]] ?? []
            let notCounted = events.filter { $0["action"] as? String == "request.approved" && $0["subject"] as? String == id }
                .compactMap { ($0["details"] as? [String: String])?["not_counted"] }
            #expect(notCounted == ["carol"], "\(notCounted)")
        }
    }

    @Test("an approver back in the group counts again: a request whose approvals are then complete is approved by one of them approving again, with no second row; an approval that does not complete it is still refused as already decided")
    func approverBackInTheGroup() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "carol", "dave")
            let id = try #require(try await server.request(t["alice"]!, role: "admin", reason: "INC-62 rebuild the broken index").string("id"))
            #expect(try await server.approve(t["carol"]!, id).string("state") == "pending")
            // Before anyone else approved, approving again changes nothing: refused as already decided.
            #expect(try await server.approve(t["carol"]!, id).string("code") == "already_decided_by_you")
            let moved = TestServer.policyYAML.replacingOccurrences(of: "  carol: {groups: [dba]}\n", with: "  carol: {groups: [engineers]}\n")
            try server.writePolicy(moved)
            #expect(try await server.reloadPolicy(TestServer.adminToken).json["reloaded"] as? Bool == true)
            #expect(try await server.approve(t["dave"]!, id).string("state") == "pending", "carol's approval does not count while she is out")
            try server.writePolicy(TestServer.policyYAML)
            #expect(try await server.reloadPolicy(TestServer.adminToken).json["reloaded"] as? Bool == true)
            // Both approvals count again: dave approving again approves it; one row each.
            let again = try await server.approve(t["dave"]!, id)
            #expect(again.string("state") == "approved", "\(again.status) \(again.json)")
            let approvers = (again.json["approvals"] as? [[String: Any]] ?? []).compactMap { $0["approver"] as? String }.sorted()
            #expect(approvers == ["carol", "dave"], "\(approvers)")
            #expect(try await server.approve(t["carol"]!, id).string("code") == "already_decided")
            let events = try await server.listAudit(TestServer.adminToken, limit: 1000).json["events"] as? [[String: Any]] ?? []
            let approved = events.filter { $0["action"] as? String == "request.approved" && $0["subject"] as? String == id }
            #expect(approved.count == 1 && (approved.first?["details"] as? [String: String])?["recounted"]?.contains("counts again") == true, "\(approved)")
            #expect(events.filter { $0["action"] as? String == "grant.started" }.count == 1)
        }
    }
}
