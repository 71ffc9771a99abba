import AsyncHTTPClient
import Foundation
import GatehouseCore
@testable import GatehouseServer
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

    @Test("a long poll answers when an approval is recorded that is not yet enough, so a waiting client shows the progress")
    func answersOnProgress() async throws {
        let policy = TestServer.policyYAML.replacingOccurrences(of: "approvals: 1", with: "approvals: 2")
        try await TestServer.with(policy: policy) { server in
            let t = try await server.tokens("alice", "bob", "carol")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let started = Date()
            async let waited = server.send(.GET, "/v1/requests/\(id)?wait=45s", token: t["alice"]!)
            try await Task.sleep(for: .milliseconds(400))
            #expect(try await server.approve(t["bob"]!, id).status == 200)
            let reply = try await waited
            #expect(reply.string("state") == "pending")
            #expect((reply.json["approvals"] as? [Any])?.count == 1, "\(reply.json)")
            #expect(Date().timeIntervalSince(started) < 30)
        }
    }

    /// Through the request desk itself: the polls are open the moment their tasks run (over HTTP, a loaded machine
    /// delayed some of eight connections past every probe of a ninth).
    @Test("a token holds at most 8 polls open; the ninth is 429 too_many_waits with Retry-After, and a poll freed is taken again")
    func tooManyWaits() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let caller = try await server.service.tokens.authenticate(bearer: t["alice"]!)
            let desk = server.service.desk
            // The longest wait a poll may ask for: on a loaded machine finding the ninth refused has taken more than 25 s.
            let polls = (0..<8).map { _ in Task { try await desk.waitForDecision(caller: caller, id: id, wait: "60s") } }
            var refusal: GatehouseError?
            for _ in 0..<100 where refusal == nil {
                try await Task.sleep(for: .milliseconds(100))
                do { _ = try await desk.waitForDecision(caller: caller, id: id, wait: "1s") } catch let error as GatehouseError { refusal = error }
            }
            let ninth = try #require(refusal, "the ninth poll was never refused")
            #expect(ninth.code == "too_many_waits" && ninth.kind == .tooManyRequests, "\(ninth)")
            #expect(ninth.refusal?.retryAfterSeconds == 5)
            // Over HTTP the refusal carries Retry-After.
            let answer = Problem.from(ninth)
            #expect(answer.status == 429 && answer.headers[.retryAfter] == "5", "\(answer.headers)")
            // Decided: the eight answer, and the token may wait again.
            #expect(try await server.approve(t["bob"]!, id).status == 200)
            for poll in polls { #expect(try await poll.value.request.state == .approved) }
            #expect(try await server.send(.GET, "/v1/requests/\(id)?wait=1s", token: t["alice"]!).status == 200)
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
