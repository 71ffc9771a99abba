import AsyncHTTPClient
import Foundation
import GatehouseCore
import NIOCore
import NIOHTTP1
import Testing

@Suite("Waiting for a decision")
struct LongPollTests {
    @Test("a long poll returns as soon as the request is decided, not at its deadline")
    func returnsOnDecision() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let started = Date()
            async let waited = server.send(.GET, "/v1/requests/\(id)?wait=45s", token: t["alice"]!)
            try await Task.sleep(for: .milliseconds(400))
            #expect(try await server.approve(t["bob"]!, id).status == 200)
            let reply = try await waited
            #expect(reply.status == 200)
            #expect(reply.string("state") == "approved")
            // Well before the 45 s deadline: the poll was woken by the decision.
            #expect(Date().timeIntervalSince(started) < 30)
        }
    }

    @Test("a long poll ends with 401 soon after its token is revoked, not at its deadline")
    func endsWhenTheTokenIsRevoked() async throws {
        try await TestServer.with { server in
            let made = try await server.createToken(TestServer.adminToken, principal: "alice")
            let token = try #require(made.string("token")), tokenID = try #require(made.string("id"))
            let id = try #require(try await server.request(token).string("id"))
            let started = Date()
            async let waited = server.send(.GET, "/v1/requests/\(id)?wait=45s", token: token)
            try await Task.sleep(for: .milliseconds(400))
            #expect(try await server.revokeToken(TestServer.adminToken, tokenID).status == 200)
            let reply = try await waited
            #expect(reply.status == 401, "\(reply.json)")
            #expect(reply.string("code") == "invalid_token")
            #expect(Date().timeIntervalSince(started) < 30)
        }
    }

    @Test("a poll on a decided request answers at once; a pending one answers pending at its deadline")
    func deadlines() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let pending = try await server.send(.GET, "/v1/requests/\(id)?wait=1s", token: t["alice"]!)
            #expect(pending.status == 200)
            #expect(pending.string("state") == "pending")
            _ = try await server.deny(t["bob"]!, id, comment: "no")
            let denied = try await server.send(.GET, "/v1/requests/\(id)?wait=60s", token: t["alice"]!)
            #expect(denied.string("state") == "denied")
        }
    }

    @Test("bad waits are 400 naming the field", arguments: ["61s", "abc", "-5s", "1h"])
    func badWait(_ wait: String) async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let reply = try await server.send(.GET, "/v1/requests/\(id)?wait=\(wait)", token: t["alice"]!)
            #expect(reply.status == 400)
            #expect(reply.string("field") == "wait")
        }
    }
}
