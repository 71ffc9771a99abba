import Foundation
import GatehouseCore
import GatehouseStore
import SQLiteKit
import Testing

/// The security invariants of DESIGN.md, driven through the real HTTP API and a real SQLite file.
@Suite("Invariants over HTTP")
struct InvariantTests {
    @Test("the walkthrough: request, approve, check, release")
    func walkthrough() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            var check = try await server.check(t["alice"]!)
            #expect(check.string("decision") == "approval_required")
            #expect(check.string("request_command")?.hasPrefix("gatehouse request prod-db --role write") == true)

            let created = try await server.request(t["alice"]!)
            #expect(created.status == 201)
            #expect(created.string("state") == "pending")
            let id = try #require(created.string("id"))

            let approved = try await server.approve(t["bob"]!, id, comment: "looks right")
            #expect(approved.status == 200)
            #expect(approved.string("state") == "approved")
            let grantId = try #require(approved.string("grant_id"))

            check = try await server.check(t["alice"]!)
            #expect(check.string("decision") == "allow")
            #expect(check.string("grant_id") == grantId)

            let released = try await server.release(t["alice"]!, grantId)
            #expect(released.status == 200)
            #expect(released.string("state") == "released")
            check = try await server.check(t["alice"]!)
            #expect(check.string("decision") == "approval_required")

            let verify = try await server.verifyAudit(TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == true)
        }
    }

    @Test("nobody approves their own request")
    func selfApprovalRefused() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("bob")
            // bob is both an engineer (requester) and a dba (approver).
            let id = try #require(try await server.request(t["bob"]!).string("id"))
            let reply = try await server.approve(t["bob"]!, id)
            #expect(reply.status == 403)
            #expect(reply.string("code") == "self_approval")
            let shown = try await server.readRequest(t["bob"]!, id)
            #expect(shown.string("state") == "pending")
            #expect((shown.json["approvals"] as? [Any])?.isEmpty == true)
        }
    }

    @Test("2-of-N: one person in both approver groups counts once")
    func onePersonCountsOnce() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "dave", "carol")
            let id = try #require(try await server.request(t["alice"]!, role: "admin", duration: "15m", reason: "rotate keys").string("id"))
            let first = try await server.approve(t["dave"]!, id)
            #expect(first.status == 200)
            #expect(first.string("state") == "pending")
            let again = try await server.approve(t["dave"]!, id)
            #expect(again.status == 409)
            #expect(again.string("code") == "already_decided_by_you")
            #expect(try await server.check(t["alice"]!, role: "admin").string("decision") == "approval_required")
            let second = try await server.approve(t["carol"]!, id)
            #expect(second.string("state") == "approved")
            #expect(try await server.check(t["alice"]!, role: "admin").string("decision") == "allow")
        }
    }

    @Test("20 concurrent approvals of one request give exactly one grant")
    func concurrentApprovalsOneGrant() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "carol", "dave", "frank")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let approvers = ["bob", "carol", "dave", "frank"].map { t[$0]! }
            let statuses = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let reply = try await server.approve(approvers[index % approvers.count], id)
                        // A store too busy to take the write in time fails closed (503 store_busy; a loaded machine can get there).
                        return (reply.status == 503 && reply.string("code") == "store_busy" ? 409 : reply.status, reply.string("grant_id"))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.filter { $0.0 == 200 }.count == 1, "\(statuses)")
            #expect(statuses.filter { $0.0 == 409 }.count == 19, "\(statuses)")
            let grants = try await server.listGrants(TestServer.adminToken, scope: .all)
            let forRequest = (grants.json["grants"] as? [[String: Any]] ?? []).filter { $0["request_id"] as? String == id }
            #expect(forRequest.count == 1)
            let approvals = try await server.service.store.read { try await $0.approvals(requestId: id) }
            #expect(approvals.count == 1)
        }
    }

    @Test("approve and deny racing on one request: exactly one outcome")
    func approveDenyRace() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "carol", "dave", "frank")
            for _ in 0..<5 {
                let id = try #require(try await server.request(t["alice"]!).string("id"))
                async let a = server.approve(t["bob"]!, id)
                async let d = server.deny(t["carol"]!, id, comment: "no")
                let (approve, deny) = try await (a, d)
                #expect([approve.status, deny.status].sorted() == [200, 409])
                let final = try await server.readRequest(t["alice"]!, id)
                let grants = try await server.service.store.read { try await $0.grants(.init(principal: "alice", limit: 1000)) }
                let grantCount = grants.filter { $0.requestId == id }.count
                #expect(final.string("state") == (approve.status == 200 ? "approved" : "denied"))
                #expect(grantCount == (approve.status == 200 ? 1 : 0))
            }
        }
    }

    @Test("a decided request cannot be decided again")
    func denyAfterApprove() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "carol")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            #expect(try await server.approve(t["bob"]!, id).status == 200)
            let deny = try await server.deny(t["carol"]!, id, comment: "too late")
            #expect(deny.status == 409)
            #expect(deny.string("code") == "already_decided")
            let cancel = try await server.cancel(t["alice"]!, id)
            #expect(cancel.status == 409)
            #expect(try await server.check(t["alice"]!).string("decision") == "allow")
        }
    }

    @Test("no access one second after expiry, even before the sweeper runs")
    func noAccessAfterExpiry() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!, duration: "10m").string("id"))
            server.clock.advance(by: 300) // approval five minutes later: the grant starts now
            let approved = try await server.approve(t["bob"]!, id)
            let grantId = try #require(approved.string("grant_id"))
            server.clock.advance(by: 599)
            #expect(try await server.check(t["alice"]!).string("decision") == "allow")
            server.clock.advance(by: 1)
            #expect(try await server.check(t["alice"]!).string("decision") == "approval_required")
            server.clock.advance(by: 1)
            #expect(try await server.check(t["alice"]!).string("decision") == "approval_required")
            let grant = try await server.readGrant(t["alice"]!, grantId)
            #expect(grant.string("state") == "expired")
            let release = try await server.release(t["alice"]!, grantId)
            #expect(release.status == 409)

            try await server.service.housekeeping.sweep()
            let events = try await server.listAudit(TestServer.adminToken, limit: 1000)
            let actions = (events.json["events"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            #expect(actions.filter { $0 == "grant.expired" }.count == 1)
            try await server.service.housekeeping.sweep()
            #expect(try await server.auditCount() == (events.json["events"] as? [Any])?.count)
        }
    }

    @Test("a pending request expires after pending_ttl and cannot be approved")
    func pendingTTL() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            server.clock.advance(by: 3600)
            let reply = try await server.approve(t["bob"]!, id)
            #expect(reply.status == 409)
            #expect(reply.string("code") == "request_expired")
            let shown = try await server.readRequest(t["alice"]!, id)
            #expect(shown.string("state") == "expired")
            #expect(try await server.check(t["alice"]!).string("decision") == "approval_required")

            // And the sweeper expires the ones nobody touched.
            let other = try #require(try await server.request(t["alice"]!).string("id"))
            server.clock.advance(by: 3601)
            let swept = try await server.service.housekeeping.sweep()
            #expect(swept.requests == 1)
            #expect(try await server.readRequest(t["alice"]!, other).string("state") == "expired")
        }
    }

    @Test("one sweeper at a time: another instance sweeps only once the holder's lease has run out")
    func sweeperLease() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice")
            let first = try #require(try await server.request(t["alice"]!).string("id"))
            server.clock.advance(by: 3601)
            // Instance A takes the two-hour lease with its sweep; instance B, on the same database, is turned away.
            #expect(try await server.service.housekeeping.sweep(holder: "instance-a", lease: 7200).requests == 1)
            let second = try #require(try await server.request(t["alice"]!).string("id"))
            server.clock.advance(by: 3601)
            #expect(try await server.service.housekeeping.sweep(holder: "instance-b", lease: 7200).requests == 0)
            #expect(try await server.readRequest(t["alice"]!, second).string("state") == "pending")
            // A stops (no renewal). Once its lease has run out, B takes over and sweeps.
            server.clock.advance(by: 3600)
            #expect(try await server.service.housekeeping.sweep(holder: "instance-b", lease: 7200).requests == 1)
            #expect(try await server.readRequest(t["alice"]!, second).string("state") == "expired")
            #expect(try await server.readRequest(t["alice"]!, first).string("state") == "expired")
            // And A, back again, waits for B's lease in turn.
            _ = try #require(try await server.request(t["alice"]!).string("id"))
            server.clock.advance(by: 3601)
            #expect(try await server.service.housekeeping.sweep(holder: "instance-a", lease: 7200).requests == 0)
        }
    }

    @Test("an approver removed from the policy before approving is refused")
    func approverRemovedFromPolicy() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "carol", "frank")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            // carol leaves the dba group; frank leaves the company (removed entirely).
            let updated = TestServer.policyYAML
                .replacingOccurrences(of: "carol: {groups: [dba]}", with: "carol: {groups: [engineers]}")
                .replacingOccurrences(of: "  frank: {groups: [dba]}\n", with: "")
            try server.writePolicy(updated)
            let reload = try await server.reloadPolicy(TestServer.adminToken)
            #expect(reload.json["reloaded"] as? Bool == true)

            let carol = try await server.approve(t["carol"]!, id)
            // No longer an approver, carol can no longer see the request either.
            #expect(carol.status == 404)
            #expect(carol.string("code") == "request_not_found")
            let frank = try await server.approve(t["frank"]!, id)
            #expect(frank.status == 401)
            #expect(try await server.readRequest(t["alice"]!, id).string("state") == "pending")
        }
    }

    @Test("a requester removed from the policy cannot be granted")
    func requesterRemovedFromPolicy() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let updated = TestServer.policyYAML.replacingOccurrences(of: "alice: {groups: [engineers]}", with: "alice: {groups: [sales]}")
            try server.writePolicy(updated)
            #expect(try await server.reloadPolicy(TestServer.adminToken).json["reloaded"] as? Bool == true)
            let reply = try await server.approve(t["bob"]!, id)
            #expect(reply.status == 409)
            #expect(reply.string("code") == "requester_ineligible")
            #expect(try await server.check(t["alice"]!).string("decision") == "deny")
        }
    }

    @Test("an invalid policy reload keeps the running policy and says why")
    func invalidReloadKeepsPolicy() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice")
            try server.writePolicy("version: 1\nprincipals: {alice: {groups: [engineers]}}\nresources:\n  prod-db: {kind: postgress, roles: {}}\n")
            let reload = try await server.reloadPolicy(TestServer.adminToken)
            #expect(reload.status == 200)
            #expect(reload.json["reloaded"] as? Bool == false)
            let problems = reload.json["problems"] as? [String] ?? []
            #expect(problems.contains { $0.contains("policy.yaml:4:") && $0.contains("postgress") })
            #expect(try await server.request(t["alice"]!).status == 201)
            let notAdmin = try await server.reloadPolicy(t["alice"]!)
            #expect(notAdmin.status == 403)
        }
    }

    @Test("a revoked or unknown token gets 401")
    func revokedTokenUnauthorized() async throws {
        try await TestServer.with { server in
            let created = try await server.createToken(TestServer.adminToken, principal: "alice")
            let token = try #require(created.string("token"))
            let tokenId = try #require(created.string("id"))
            #expect(try await server.whoami(token).string("principal") == "alice")
            let listed = try await server.listTokens(TestServer.adminToken)
            #expect(!String(decoding: listed.body, as: UTF8.self).contains(token))
            #expect(try await server.revokeToken(TestServer.adminToken, tokenId).status == 200)
            let after = try await server.whoami(token)
            #expect(after.status == 401)
            #expect(after.headers.first(name: "content-type") == "application/problem+json")
            #expect(after.headers.first(name: "www-authenticate") == "Bearer")
            #expect(try await server.whoami("ghs_not_a_real_token").status == 401)
            #expect(try await server.whoami(nil).status == 401)
            // Only the hash is stored.
            let stored = try await server.service.store.read { try await $0.token(hash: TokenSecret.hash(token)) }
            #expect(stored == nil) // revoked tokens are not returned as live
        }
    }

    @Test("non-admins cannot issue tokens, revoke grants or read the audit log")
    func adminOnly() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "erin")
            #expect(try await server.createToken(t["alice"]!, principal: "alice").status == 403)
            #expect(try await server.listAudit(t["alice"]!).status == 403)
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let grantId = try #require(try await server.approve(t["bob"]!, id).string("grant_id"))
            #expect(try await server.revokeGrant(t["bob"]!, grantId, reason: "x").status == 403)
            // erin is in the admins group of the policy.
            let revoked = try await server.revokeGrant(t["erin"]!, grantId, reason: "suspicious activity")
            #expect(revoked.status == 200)
            #expect(revoked.string("state") == "revoked")
            #expect(try await server.check(t["alice"]!).string("decision") == "approval_required")
        }
    }

    @Test("approvals: 0 grants at once, time-boxed and audited")
    func zeroApprovals() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice")
            let reply = try await server.request(t["alice"]!, role: "read", duration: "2h", reason: "look at slow queries")
            #expect(reply.status == 201)
            #expect(reply.string("state") == "approved")
            #expect(reply.string("grant_id") != nil)
            #expect(try await server.check(t["alice"]!, role: "read").string("decision") == "allow")
            server.clock.advance(by: 7200)
            #expect(try await server.check(t["alice"]!, role: "read").string("decision") == "approval_required")
        }
    }

    @Test("editing or deleting an audit row in the database is found by audit verify")
    func tamperedAuditDetected() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            _ = try await server.approve(t["bob"]!, id)
            #expect(try await server.verifyAudit(TestServer.adminToken).json["ok"] as? Bool == true)

            try await server.database.tamper("UPDATE audit_events SET actor = 'mallory' WHERE seq = 5 AND actor = 'bob'")
            var verify = try await server.verifyAudit(TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == false)
            #expect(verify.json["broken_at"] as? Int == 5)

            try await server.database.tamper("DELETE FROM audit_events WHERE seq = 5")
            verify = try await server.verifyAudit(TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == false)
            #expect(verify.json["broken_at"] as? Int == 5)
        }
    }

    @Test("deleting the chain head, or adding events after it, is detected")
    func auditHeadTampering() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice")
            _ = try await server.request(t["alice"]!)
            let count = try await server.auditCount()
            try await server.database.tamper("""
                INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash)
                VALUES (\(bind: count + 1), 0, 'mallory', 'grant.created', 'x', '{}', 'x', 'x')
                """)
            var verify = try await server.verifyAudit(TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == false)
            #expect((verify.string("problem") ?? "").contains("after the chain head"), "\(verify.json)")
            try await server.database.tamper("DELETE FROM audit_events WHERE seq = \(bind: count + 1)")
            #expect(try await server.verifyAudit(TestServer.adminToken).json["ok"] as? Bool == true)
            try await server.database.tamper("DELETE FROM audit_head")
            verify = try await server.verifyAudit(TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == false)
            #expect((verify.string("problem") ?? "").contains("head is missing"), "\(verify.json)")
        }
    }

    @Test("deleting the newest audit rows is detected through the chain head")
    func truncatedAuditDetected() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice")
            _ = try await server.request(t["alice"]!)
            let count = try await server.auditCount()
            try await server.database.tamper("DELETE FROM audit_events WHERE seq = \(bind: count)")
            let verify = try await server.verifyAudit(TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == false)
            #expect((verify.string("problem") ?? "").contains("head"))
        }
    }
}
