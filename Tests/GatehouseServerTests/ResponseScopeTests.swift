import Foundation
import GatehouseCore
import Testing

@Suite("What responses reveal: no caching of API answers, no spam score for its requester")
struct ResponseScopeTests {
    @Test("API answers, a token's creation above all, say Cache-Control: no-store")
    func noStore() async throws {
        try await TestServer.with { server in
            let created = try await server.send(.POST, "/v1/tokens", token: TestServer.adminToken, json: ["principal": "alice"])
            #expect(created.status == 201, "\(created.json)")
            #expect(created.headers["Cache-Control"].first == "no-store")
            let listed = try await server.send(.GET, "/v1/requests", token: created.string("token"))
            #expect(listed.status == 200)
            #expect(listed.headers["Cache-Control"].first == "no-store")
        }
    }

    @Test("on the web, a requester sees neither the score of their own request nor its badge; an approver sees both")
    func spamScoreHiddenFromRequester() async throws {
        let policy = TestServer.policyYAML.replacingOccurrences(of: "antispam: {enabled: false}", with: "antispam: {limits: {per_source_ip: off}}")
        try await TestServer.with(policy: policy) { server in
            let t = try await server.tokens("alice", "bob")
            // A new principal with a vague reason: new_principal and low_information_reason fire.
            let filed = try await server.request(t["alice"]!, reason: "INC-4411 need access pls")
            let id = try #require(filed.string("id"), "\(filed.json)")
            var alice = Browser(baseURL: server.baseURL)
            _ = try await alice.signIn(t["alice"]!)
            let own = try await alice.get("/requests/\(id)")
            #expect(own.status == 200)
            #expect(!own.html.contains("Anti-spam"))
            #expect(!own.html.contains("low_information_reason"))
            let mine = try await alice.get("/mine")
            #expect(mine.html.contains(id))
            #expect(!mine.html.contains("spam score"))
            var bob = Browser(baseURL: server.baseURL)
            _ = try await bob.signIn(t["bob"]!)
            let approver = try await bob.get("/requests/\(id)")
            #expect(approver.html.contains("Anti-spam"))
            #expect(approver.html.contains("low_information_reason"))
        }
    }
}
