import Foundation
import GatehouseCore
import Testing

@Suite("An on-call incident with the default anti-spam policy")
struct IncidentPatternTests {
    static let databases = ["orders-db", "payments-db", "checkout-db", "inventory-db", "ledger-db", "users-db"]

    /// A new team on its first day: nobody has a history yet, and nothing under `antispam:` is changed.
    static let policy: String = {
        var yaml = """
            version: 1
            principals:
              alice: {groups: [engineers]}
              bob: {groups: [dba]}
              carol: {groups: [dba]}
              erin: {groups: [security]}
            admins: [security]
            resources:

            """
        for database in databases {
            yaml += """
                  \(database):
                    kind: postgres
                    roles:
                      read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}
                      write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: write,
                              reason: {min_length: 10, ticket: "(INC|CHG)-[0-9]+"}}

                """
        }
        return yaml + "pending_ttl: 24h\n"
    }()

    /// The writes come ten minutes after the reads, or at once, in words of their own or the reads' own words.
    @Test("six reads within a minute under one ticket, then two writes: every read granted, the writes reach an approver, nobody blocked",
          arguments: [(600.0, "INC-2291 apply the fix for the failing payment path"), (0.0, "INC-2291 apply the fix for the failing payment path"),
                      (0.0, "INC-2291 checkout errors, tracing the failing payment path")])
    func sixReadsThenTwoWrites(pause: Double, writeReason: String) async throws {
        try await TestServer.with(policy: Self.policy) { server in
            let t = try await server.tokens("alice", "bob")
            let reason = "INC-2291 checkout errors, tracing the failing payment path"
            for database in Self.databases {
                let reply = try await server.request(t["alice"]!, resource: database, role: "read", duration: "2h", reason: reason)
                #expect(reply.status == 201, "\(database): \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
                #expect(reply.string("state") == "approved", "\(database)")
                server.clock.advance(by: 9)
            }
            server.clock.advance(by: pause)
            for database in Self.databases.prefix(2) {
                let reply = try await server.request(t["alice"]!, resource: database, role: "write", duration: "1h", reason: writeReason)
                #expect(reply.status == 201, "\(database): \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
                #expect(reply.string("state") == "pending", "\(database)")
                #expect(reply.json["approvals_required"] as? Int == 1, "no extra approval for \(database)")
                let id = try #require(reply.string("id"))
                #expect(try await server.approve(t["bob"]!, id).string("state") == "approved")
                server.clock.advance(by: pause == 0 ? 5 : 120)
            }
            // Not blocked, not throttled, and every grant usable.
            let flagged = try await server.listPrincipals(TestServer.adminToken)
            #expect((flagged.json["principals"] as? [[String: Any]] ?? []).isEmpty, "\(flagged.json)")
            for database in Self.databases {
                let check = try await server.check(t["alice"]!, resource: database, role: "read")
                #expect(check.string("decision") == "allow", "\(database): \(check.json)")
            }
        }
    }
}
