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
            let listed = try await server.listRequests(created.string("token"))
            #expect(listed.status == 200)
            #expect(listed.headers["Cache-Control"].first == "no-store")
            // Refusals too: a problem+json answer is not cached either.
            for (path, token) in [("/v1/requests/req_doesnotexist00", created.string("token")), ("/v1/whoami", "ghs_bad")] {
                let refused = try await server.send(.GET, path, token: token)
                #expect([401, 404].contains(refused.status))
                #expect(refused.headers["Cache-Control"].first == "no-store", "\(path)")
            }
        }
    }

    @Test("the request page shows an approver the requester's other requests only on resources that approver may see")
    func historyScope() async throws {
        try await TestServer.with(policy: ReportScopeTests.policy) { server in
            let t = try await server.tokens("alice", "carol", "erin")
            let onAnalytics = try #require(try await server.request(t["alice"]!, resource: "analytics", role: "read", reason: "INC-70 weekly numbers").string("id"))
            let onHost = try #require(try await server.request(t["alice"]!, resource: "prod-host", role: "operate", reason: "INC-71 restart the worker").string("id"))
            let id = try #require(try await server.request(t["alice"]!, reason: "INC-72 fix the order rows").string("id"))
            var carol = Browser(baseURL: server.baseURL)
            _ = try await carol.signIn(t["carol"]!)
            let page = try await carol.get("/requests/\(id)")
            #expect(page.status == 200)
            #expect(page.html.contains(onHost), "carol approves prod-host: that request is hers to see")
            #expect(!page.html.contains(onAnalytics), "carol does not approve analytics: alice's request there is not shown")
            var erin = Browser(baseURL: server.baseURL)
            _ = try await erin.signIn(t["erin"]!)
            #expect(try await erin.get("/requests/\(id)").html.contains(onAnalytics), "an admin sees the whole history")
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
