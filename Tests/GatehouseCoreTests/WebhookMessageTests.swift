import Crypto
import Foundation
import Testing
@testable import GatehouseCore

@Suite("Webhook messages")
struct WebhookMessageTests {
    static func audit(_ action: String, subject: String = "req_1", details: [String: String] = ["principal": "alice"]) -> AuditEvent {
        AuditEvent(seq: 42, at: Fixture.t0, actor: "bob", action: action, subject: subject, resource: "prod-db", details: details,
                   prevHash: "", hash: "")
    }

    static let request = AccessRequest(id: "req_1", requester: "alice", resource: "prod-db", role: "write", duration: TimeSpan(seconds: 1800),
                                       reason: "INC-1 <b>fix</b> & \"go\"", ticket: nil, state: .pending, approvalsRequired: 1,
                                       createdAt: Fixture.t0, pendingExpiresAt: Fixture.t0.addingTimeInterval(3600))

    @Test("audit actions map to the subscribable events; others are not announced", arguments: [
        ("request.created", WebhookEvent.requestCreated), ("request.released", .requestCreated), ("grant.revoked", .grantEnded), ("grant.used", .grantEnded),
        ("grant.expired", .grantEnded), ("break_glass.used", .breakGlassUsed), ("notification.digest", .digest),
    ])
    func mapping(_ action: String, _ event: WebhookEvent) {
        #expect(WebhookEvent(auditAction: action) == event)
    }

    @Test("token, policy and web events are not announced", arguments: ["token.created", "policy.reloaded", "web.signed_in", "action.checked"])
    func notAnnounced(_ action: String) {
        #expect(WebhookEvent(auditAction: action) == nil)
    }

    @Test("the standard body is {type, timestamp, data} with the request and a link")
    func standardBody() throws {
        let message = WebhookMessage(id: "msg_42", event: .requestCreated, at: Fixture.t0, audit: Self.audit("request.created"),
                                     request: Self.request, recipients: ["bob", "carol"], link: "https://gh.example/requests/req_1")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(message.standardBody())) as? [String: Any])
        #expect(object["type"] as? String == "request.created")
        #expect(object["timestamp"] as? String == Fixture.t0.rfc3339)
        let data = try #require(object["data"] as? [String: Any])
        #expect(data["url"] as? String == "https://gh.example/requests/req_1")
        #expect(data["recipients"] as? [String] == ["bob", "carol"])
        let request = try #require(data["request"] as? [String: Any])
        #expect(request["reason"] as? String == Self.request.reason)
        #expect(request["requester"] as? String == "alice")
    }

    @Test("the Slack body has a text fallback, escaped mrkdwn fields and a button to the request page")
    func slackBody() throws {
        var request = Self.request
        request.requester = "<!channel>"
        let message = WebhookMessage(id: "msg_42", event: .requestCreated, at: Fixture.t0, audit: Self.audit("request.created"),
                                     request: request, recipients: ["bob"], link: "https://gh.example/requests/req_1")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(message.slackBody())) as? [String: Any])
        #expect((object["text"] as? String)?.contains("INC-1") == true)
        let blocks = try #require(object["blocks"] as? [[String: Any]])
        let text = String(decoding: try JSONSerialization.data(withJSONObject: blocks), as: UTF8.self)
        #expect(text.contains("&lt;!channel&gt;"))
        #expect((object["text"] as? String)?.contains("<!channel>") == false)
        #expect(!text.contains("*Requester*\\n<!channel>"))
        let actions = try #require(blocks.first { $0["type"] as? String == "actions" })
        let button = try #require((actions["elements"] as? [[String: Any]])?.first)
        #expect(button["url"] as? String == "https://gh.example/requests/req_1")
    }

    @Test("message ids follow the audit sequence: one per event, the same for every endpoint and retry")
    func ids() {
        var event = WebhookMessageTests.audit("request.created")
        event.hash = "0123456789abcdef0123456789abcdef"
        #expect(WebhookMessage.id(for: event) == "msg_42_0123456789abcdef")
        var other = event
        other.hash = "fedcba9876543210fedcba9876543210"
        #expect(WebhookMessage.id(for: other) != WebhookMessage.id(for: event))
    }
}
