import Foundation
import Testing

/// Who sees what: requests, grants and the audit log.
@Suite("Visibility over HTTP")
struct VisibilityTests {
    @Test("requests waiting for my approval: not mine, not already decided by me, only roles I approve")
    func toApprove() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "dave", "erin")
            let write = try #require(try await server.request(t["alice"]!).string("id"))
            let admin = try #require(try await server.request(t["alice"]!, role: "admin", duration: "10m", reason: "rotate keys").string("id"))
            let bobs = try #require(try await server.request(t["bob"]!).string("id"))

            func waiting(_ who: String) async throws -> Set<String> {
                let reply = try await server.listRequests(t[who]!, scope: .toApprove)
                return Set((reply.json["requests"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String })
            }
            #expect(try await waiting("bob") == [write, admin])          // not his own
            #expect(try await waiting("dave") == [write, admin, bobs])
            #expect(try await waiting("erin") == [admin])                // security approves only the admin role
            #expect(try await waiting("alice").isEmpty)
            _ = try await server.approve(t["dave"]!, admin)
            #expect(try await waiting("dave") == [write, bobs])          // he already decided the admin one

            // Others' requests are invisible to people who cannot decide them.
            let peek = try await server.readRequest(t["alice"]!, bobs)
            #expect(peek.status == 404)
            #expect(try await server.listRequests(t["alice"]!, scope: .all).status == 403)
            let all = try await server.listRequests(t["erin"]!, scope: .all)
            #expect((all.json["requests"] as? [Any])?.count == 3)
        }
    }

    @Test("grants: mine only, unless admin")
    func grants() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "erin")
            let reply = try await server.request(t["alice"]!, role: "read", duration: "1h", reason: "look at slow queries")
            let grantId = try #require(reply.string("grant_id"))
            #expect(try await server.readGrant(t["bob"]!, grantId).status == 404)
            #expect(try await server.release(t["bob"]!, grantId).status == 404)
            #expect(try await server.listGrants(t["bob"]!, scope: .all).status == 403)
            let bobs = try await server.listGrants(t["bob"]!)
            #expect((bobs.json["grants"] as? [Any])?.isEmpty == true)
            let all = try await server.listGrants(t["erin"]!, scope: .all, active: true)
            #expect((all.json["grants"] as? [[String: Any]])?.map { $0["id"] as? String } == [grantId])
        }
    }

    @Test("audit filters: principal (exact, wildcards do not match), resource, since")
    func auditFilters() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            _ = try await server.request(t["alice"]!, role: "read", duration: "1h", reason: "look at slow queries")
            server.clock.advance(by: 60)
            let since = ISO8601DateFormatter().string(from: server.clock.now())
            _ = try await server.request(t["bob"]!, resource: "billing-api", role: "operate", duration: "1h", reason: "replay webhooks")

            func actions(_ query: String) async throws -> [String] {
                let reply = try await server.send(.GET, "/v1/audit?\(query)", token: TestServer.adminToken)
                #expect(reply.status == 200)
                return (reply.json["events"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            }
            #expect(try await actions("principal=alice").contains("grant.started"))
            #expect(try await actions("principal=a_ice").isEmpty)
            // A text that cannot be a name (a LIKE wildcard, capitals) is refused, not matched.
            let wildcard = try await server.send(.GET, "/v1/audit?principal=%25", token: TestServer.adminToken)
            #expect(wildcard.status == 400 && wildcard.string("code") == "invalid_name")
            #expect(try await actions("resource=billing-api") == ["request.created"])
            #expect(try await actions("since=\(since)") == ["request.created"])
            #expect(try await server.send(.GET, "/v1/audit?since=yesterday", token: TestServer.adminToken).status == 400)
        }
    }
}
