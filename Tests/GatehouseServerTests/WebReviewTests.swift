import AsyncHTTPClient
import Foundation
import GatehouseCore
import NIOCore
import NIOHTTP1
import Testing

@Suite("Web inbox: security review of held requests")
struct WebReviewTests {
    @Test("a reviewer sees a held request in the inbox and releases or rejects it through the form; others get no form")
    func releaseAndReject() async throws {
        let policy = TestServer.policyYAML + """

            notifications:
              base_url: https://gatehouse.example.com
              webhooks:
                chat: {url: "http://127.0.0.1:9/hook", format: slack, events: [request.created]}
            """
        try await TestServer.with(policy: policy) { server in
            try await server.service.outbox.queueMessages()
            let t = try await server.tokens("alice", "bob", "erin")
            // bob reports one of alice's requests: alice is blocked, her other waiting ones are held.
            let reported = try #require(try await server.request(t["alice"]!).string("id"))
            let held = try #require(try await server.request(t["alice"]!, role: "admin", reason: "INC-4411 rebuild the index").string("id"))
            let other = try #require(try await server.request(t["alice"]!, resource: "prod-host", role: "operate").string("id"))
            #expect(try await server.report(t["bob"]!, reported, comment: "odd").status == 200)
            #expect(try await server.readRequest(TestServer.adminToken, held).string("state") == "quarantined")

            var bob = Browser(baseURL: server.baseURL)
            _ = try await bob.signIn(t["bob"]!)
            let notReviewer = try await bob.get("/requests/\(held)")
            #expect(!notReviewer.html.contains("/requests/\(held)/review"))
            #expect(try await bob.post("/requests/\(held)/review", [("csrf", notReviewer.csrf ?? ""), ("review", "release")]).status == 404)

            var erin = Browser(baseURL: server.baseURL)
            _ = try await erin.signIn(t["erin"]!)
            let inbox = try await erin.get("/inbox")
            #expect(inbox.html.contains("Held for security review"))
            #expect(inbox.html.contains("/requests/\(held)"))
            let page = try await erin.get("/requests/\(held)")
            #expect(page.html.contains("action=\"/requests/\(held)/review\""))
            let csrf = try #require(page.csrf)
            #expect(try await erin.post("/requests/\(held)/review", [("review", "release")]).status == 403)
            #expect(try await erin.post("/requests/\(held)/review", [("csrf", csrf), ("review", "maybe")]).status == 400)
            let released = try await erin.post("/requests/\(held)/review", [("csrf", csrf), ("review", "release"), ("comment", "looked fine")])
            #expect(released.status == 303)
            #expect(released.location == "/requests/\(held)?done=held-released")
            #expect(try await erin.get(released.location!).html.contains("Released: the approvers are told now."))
            #expect(try await server.readRequest(TestServer.adminToken, held).string("state") == "pending")
            // Released, it reaches its approvers now: the outbox announces it as waiting, with a link.
            try await server.service.outbox.queueMessages()
            let bodies = try await server.service.store.read { try await $0.deliveries(limit: 100) }
                .filter { $0.event == "request.created" }.map(\.body)
            #expect(bodies.contains { $0.contains("https://gatehouse.example.com/requests/\(held)") }, "\(bodies)")
            let rejected = try await erin.post("/requests/\(other)/review", [("csrf", csrf), ("review", "reject"), ("comment", "<b>no</b>")])
            #expect(rejected.status == 303)
            let shown = try await erin.get("/requests/\(other)")
            #expect(shown.html.contains("state denied"))
            #expect(shown.html.contains("&lt;b&gt;no&lt;/b&gt;"))
            // Already decided: a replay is refused.
            #expect(try await erin.post("/requests/\(other)/review", [("csrf", csrf), ("review", "release")]).status == 409)
        }
    }
}
