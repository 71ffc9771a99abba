import Foundation
import GatehouseCore
import Testing

/// One-shot action approvals and action checks, through the real HTTP API.
@Suite("Actions over HTTP")
struct ActionTests {
    static let delete = "DELETE FROM orders -- WHERE id = 1\n"

    @Test("an admin's check for someone else is a check like theirs: it uses up their one-shot approval, and the audit log names the admin as who asked")
    func checkOnBehalf() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.requestAction(t["alice"]!, text: Self.delete).string("id"))
            let grantId = try #require(try await server.approve(t["bob"]!, id).string("grant_id"))
            let asked = try await server.checkAction(TestServer.adminToken, text: Self.delete, principal: "alice")
            #expect(asked.string("decision") == "allow" && asked.string("grant_id") == grantId && asked.string("principal") == "alice", "\(asked.json)")
            #expect(asked.json["used_grant"] as? Bool == true)
            #expect(try await server.checkAction(t["alice"]!, text: Self.delete).string("decision") == "approval_required", "used once, by the admin's check")
            let events = try await server.listAudit(TestServer.adminToken, limit: 1000).json["events"] as? [[String: Any]] ?? []
            let used = try #require(events.first { $0["action"] as? String == "grant.used" })
            #expect(used["actor"] as? String == "admin" && (used["details"] as? [String: String])?["principal"] == "alice", "\(used)")
            let checked = events.filter { $0["action"] as? String == "action.checked" }
            #expect(checked.map { "\($0["actor"] ?? "")/\(($0["details"] as? [String: String])?["principal"] ?? "")" }.sorted() == ["admin/alice", "alice/alice"], "\(checked)")
        }
    }

    @Test("an exact statement is approved by another person, allowed once, then refused; one changed byte is refused")
    func oneShot() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            var check = try await server.checkAction(t["alice"]!, text: Self.delete)
            #expect(check.string("decision") == "approval_required")
            let commands = check.json["request_commands"] as? [String] ?? []
            #expect(commands.contains { $0.hasPrefix("gatehouse request prod-db --role admin") })
            #expect(commands.contains { $0.hasPrefix("gatehouse request prod-db --sql 'DELETE FROM orders") })
            let classification = check.json["classification"] as? [String: Any] ?? [:]
            #expect(classification["risk"] as? String == "dangerous")

            let created = try await server.requestAction(t["alice"]!, text: Self.delete)
            #expect(created.status == 201, "\(String(decoding: created.body, as: UTF8.self))")
            let id = try #require(created.string("id"))
            #expect(created.string("role") == "action")
            #expect(created.string("duration") == "1h")
            let action = created.json["action"] as? [String: Any] ?? [:]
            #expect(action["normalized"] as? String == "DELETE FROM orders")  // the misleading comment is gone
            #expect(action["risk"] as? String == "dangerous")
            #expect((action["categories"] as? [String])?.contains("delete_without_where") == true)
            #expect(action["sha256"] as? String == Action(kind: .sql, text: Self.delete).digest)

            let selfApproval = try await server.approve(t["alice"]!, id)
            #expect(selfApproval.status == 403)
            let approved = try await server.approve(t["bob"]!, id)
            #expect(approved.string("state") == "approved")
            let grantId = try #require(approved.string("grant_id"))

            // One byte changed (the comment's digit): a different action, refused, and the grant stays unused.
            let changed = try await server.checkAction(t["alice"]!, text: "DELETE FROM orders -- WHERE id = 2\n")
            #expect(changed.string("decision") == "approval_required")
            // The action grant does not stand in for a role.
            #expect(try await server.check(t["alice"]!, role: "admin").string("decision") == "approval_required")

            check = try await server.checkAction(t["alice"]!, text: Self.delete)
            #expect(check.string("decision") == "allow")
            #expect(check.string("grant_id") == grantId)
            #expect(check.json["used_grant"] as? Bool == true)

            check = try await server.checkAction(t["alice"]!, text: Self.delete)
            #expect(check.string("decision") == "approval_required")

            let grant = try await server.readGrant(t["alice"]!, grantId)
            #expect(grant.string("state") == "used")

            let audit = try await server.listAudit(TestServer.adminToken, limit: 1000)
            let actions = (audit.json["events"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            #expect(actions.filter { $0 == "action.checked" }.count == 4)
            #expect(actions.filter { $0 == "grant.used" }.count == 1)
            let used = (audit.json["events"] as? [[String: Any]] ?? []).first { $0["action"] as? String == "grant.used" }?["details"] as? [String: String]
            #expect(used?["sha256"] == Action(kind: .sql, text: Self.delete).digest && used?["approved_sha256"] == used?["sha256"])
            let verify = try await server.verifyAudit(TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == true)
        }
    }

    /// psql sends a statement with its `;`, people approve it without: the same statement. Anything inside it
    /// is another action; the audit says which text ran and which was approved.
    @Test("whitespace around an approved SQL text and trailing semicolons are the same statement; the audit names both digests")
    func surroundingsOfTheText() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let approvedText = "DELETE FROM orders WHERE id = 1"
            let id = try #require(try await server.requestAction(t["alice"]!, text: approvedText).string("id"))
            #expect(try await server.approve(t["bob"]!, id).string("state") == "approved")
            for inside in ["DELETE FROM orders WHERE id =  1", "DELETE FROM orders WHERE id = 1 -- x", "delete from orders where id = 1"] {
                #expect(try await server.checkAction(t["alice"]!, text: inside).string("decision") == "approval_required", "\(inside)")
            }
            let ran = "\n DELETE FROM orders WHERE id = 1 ;;\t"
            #expect(try await server.checkAction(t["alice"]!, text: ran).string("decision") == "allow")
            #expect(try await server.checkAction(t["alice"]!, text: approvedText).string("decision") == "approval_required", "used once")
            let audit = try await server.listAudit(TestServer.adminToken, limit: 1000)
            let used = (audit.json["events"] as? [[String: Any]] ?? []).first { $0["action"] as? String == "grant.used" }?["details"] as? [String: String]
            #expect(used?["sha256"] == Action(kind: .sql, text: ran).digest)
            #expect(used?["approved_sha256"] == Action(kind: .sql, text: approvedText).digest)
        }
    }

    @Test("statements that differ only in constants: each classified by what it does, each approved on its own")
    func constantsDiffer() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            func classification(_ text: String) async throws -> [String: Any] {
                try await server.checkAction(t["alice"]!, text: text).json["classification"] as? [String: Any] ?? [:]
            }
            let texts = ["DELETE FROM orders WHERE id = 5 OR 1 = 2", "DELETE FROM orders WHERE id = 6 OR 1 = 1",
                         "DELETE FROM orders WHERE id = 7; TRUNCATE orders_archive", "DELETE FROM orders WHERE id = 123456; TRUNCATE orders_archive"]
            var risks: [String] = []
            for text in texts { risks.append(try await classification(text)["risk"] as? String ?? "?") }
            #expect(risks == ["write", "dangerous", "dangerous", "dangerous"])
            // Positions point into the text checked, not into the earlier one of the same shape.
            let findings = try await classification(texts[3])["findings"] as? [[String: Any]] ?? []
            let truncate = findings.first { $0["category"] as? String == "truncate" }
            #expect(truncate?["position"] as? Int == texts[3].utf8.count - "TRUNCATE orders_archive".utf8.count, "\(findings)")

            // An approval is for its exact text: id = 5 approved does not allow id = 6.
            let created = try await server.requestAction(t["alice"]!, text: "DELETE FROM orders WHERE id = 5")
            let id = try #require(created.string("id"))
            #expect(try await server.approve(t["bob"]!, id).string("state") == "approved")
            #expect(try await server.checkAction(t["alice"]!, text: "DELETE FROM orders WHERE id = 6").string("decision") == "approval_required")
            #expect(try await server.checkAction(t["alice"]!, text: "DELETE FROM orders WHERE id = 5").string("decision") == "allow")
        }
    }

    @Test("concurrent checks of one approved action: exactly one is allowed")
    func usedOnce() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.requestAction(t["alice"]!, text: "TRUNCATE audit_scratch").string("id"))
            #expect(try await server.approve(t["bob"]!, id).string("state") == "approved")
            let decisions = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<24 {
                    group.addTask {
                        let reply = try await server.checkAction(t["alice"]!, text: "TRUNCATE audit_scratch")
                        // A store too busy to answer in time fails closed (503 store_busy; a loaded machine can get there).
                        return reply.string("decision") ?? (reply.status == 503 && reply.string("code") == "store_busy" ? "busy" : "\(reply.status)")
                    }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(decisions.filter { $0 == "allow" }.count == 1, "\(decisions)")
            #expect(decisions.allSatisfy { ["allow", "approval_required", "busy"].contains($0) }, "\(decisions)")
        }
    }

    @Test("an action grant ends at its expiry like any grant")
    func expiry() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.requestAction(t["alice"]!, text: "DROP TABLE tmp_import").string("id"))
            #expect(try await server.approve(t["bob"]!, id).string("state") == "approved")
            server.clock.advance(by: 3601)
            #expect(try await server.checkAction(t["alice"]!, text: "DROP TABLE tmp_import").string("decision") == "approval_required")
        }
    }

    @Test("a role allows actions up to its level; forbidden is denied and cannot even be requested")
    func roleLevels() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!, role: "write").string("id"))
            #expect(try await server.approve(t["bob"]!, id).string("state") == "approved")
            #expect(try await server.checkAction(t["alice"]!, text: "UPDATE orders SET state = 'paid' WHERE id = 7").string("decision") == "allow")
            #expect(try await server.checkAction(t["alice"]!, text: "SELECT * FROM orders").string("decision") == "allow")
            #expect(try await server.checkAction(t["alice"]!, text: "UPDATE orders SET state = 'paid'").string("decision") == "approval_required")

            let forbidden = try await server.checkAction(t["alice"]!, text: "DROP DATABASE prod")
            #expect(forbidden.string("decision") == "deny")
            #expect(forbidden.string("reason")?.contains("drop_database") == true)
            let refused = try await server.requestAction(t["alice"]!, text: "DROP DATABASE prod")
            #expect(refused.status == 403)
            #expect(refused.string("code") == "forbidden_action")
        }
    }

    @Test("shell actions: classification, a policy rule, and the resource kind")
    func shell() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let classify = try await server.send(.POST, "/v1/classify", token: t["alice"]!, json: ["kind": "shell", "text": "helm uninstall web --namespace prod"])
            #expect(classify.status == 200)
            #expect(classify.string("risk") == "dangerous")
            let rm = try await server.checkAction(t["alice"]!, resource: "prod-host", kind: .shell, text: "sudo rm -rf /var/lib/postgresql")
            #expect(rm.string("decision") == "approval_required")
            let wrongKind = try await server.requestAction(t["alice"]!, resource: "prod-host", kind: .sql, text: "SELECT 1")
            #expect(wrongKind.status == 422)
            #expect(wrongKind.string("code") == "wrong_action_kind")
            #expect(try await server.checkAction(t["alice"]!, resource: "prod-db", kind: .shell, text: "ls").string("decision") == "deny")
        }
    }

    @Test("bad action input gets a clear 4xx and stores nothing", arguments: [
        (#"{"resource": "prod-db", "action": {"kind": "sql", "text": ""}, "reason": "INC-1 cleanup"}"#, "invalid_action", 400),
        (#"{"resource": "prod-db", "action": {"kind": "sql", "text": "SELECT 1\u0000; DROP TABLE t"}, "reason": "INC-1 cleanup"}"#, "invalid_action", 400),
        (#"{"resource": "prod-db", "role": "write", "duration": "1h", "action": {"kind": "sql", "text": "SELECT 1"}, "reason": "INC-1 cleanup"}"#, "role_or_action", 400),
        (#"{"resource": "prod-db", "role": "write", "duration": "1h", "action": null, "reason": "INC-1 cleanup"}"#, "role_or_action", 400),
        (#"{"resource": "prod-db", "reason": "INC-1 cleanup"}"#, "role_or_action", 400),
        (#"{"resource": "prod-db", "role": "write", "action": {"kind": "sql", "text": "SELECT 1"}, "reason": "INC-1 cleanup"}"#, "role_or_action", 400),
        (#"{"resource": "prod-db", "role": null, "action": {"kind": "sql", "text": "SELECT 1"}, "reason": "INC-1 cleanup"}"#, "role_or_action", 400),
        (#"{"resource": "prod-db", "role": "write", "duration": "1h", "reason": "INC-1 cleanup", "urgent": true}"#, "unknown_field", 400),
        (#"{"resource": "prod-db", "action": {"kind": "sql", "text": "SELECT 1"}}"#, "missing_field", 400),
        (#"{"resource": "prod-db", "action": {"kind": "sql", "text": "SELECT 1", "params": [1]}, "reason": "INC-1 cleanup"}"#, "unknown_field", 400),
        (#"{"resource": "billing-api", "action": {"kind": "sql", "text": "SELECT 1"}, "reason": "INC-1 cleanup"}"#, "actions_not_enabled", 404),
        (#"{"resource": "no-such-db", "role": "write", "duration": "1h", "reason": "INC-1 cleanup"}"#, "unknown_resource", 404),
        // Not names at all, as /v1/check says of them.
        (#"{"resource": "Prod-db", "role": "write", "duration": "1h", "reason": "INC-1 cleanup"}"#, "invalid_name", 400),
        (#"{"resource": "prod-db", "role": "../write", "duration": "1h", "reason": "INC-1 cleanup"}"#, "invalid_name", 400),
        (#"{"resource": "prod-db", "role": "action", "duration": "1h", "reason": "INC-1 cleanup"}"#, "missing_action", 404),
        (#"{"resource": "prod-db", "action": {"kind": "perl", "text": "1"}, "reason": "INC-1 cleanup"}"#, "", 400),
        (#"{"resource": "prod-db", "role": "write", "reason": "INC-1 cleanup"}"#, "missing_duration", 400),
    ])
    func badInput(body: String, code: String, status: Int) async throws {
        try await TestServer.with { server in
            let alice = try await server.token(for: "alice")
            let before = try await server.auditCount()
            let reply = try await server.send(.POST, "/v1/requests", token: alice, rawBody: Data(body.utf8))
            #expect(reply.status == status, "\(String(decoding: reply.body, as: UTF8.self))")
            if !code.isEmpty { #expect(reply.string("code") == code, "\(String(decoding: reply.body, as: UTF8.self))") }
            #expect(reply.string("detail")?.isEmpty == false)
            #expect(try await server.auditCount() == before)
        }
    }
}
