import Crypto
import Foundation
import Testing
@testable import GatehouseCore

@Suite("Standard Webhooks signing")
struct WebhookSigningTests {
    // The example of the Standard Webhooks specification (signature computed independently with
    // Python's hmac module: HMAC-SHA256 over `id.timestamp.body` under the base64-decoded secret).
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    static let id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    static let timestamp: Int64 = 1_614_265_330
    static let body = Array(#"{"test": 2432232314}"#.utf8)

    @Test("the signature matches the specification's example")
    func knownAnswer() throws {
        let key = try StandardWebhooks.key(fromSecret: Self.secret, endpoint: "t")
        #expect(StandardWebhooks.signature(id: Self.id, timestamp: Self.timestamp, body: Self.body, key: key)
                == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test("verification accepts one of several signatures and refuses any change to id, time or body")
    func verification() throws {
        let key = try StandardWebhooks.key(fromSecret: Self.secret, endpoint: "t")
        let good = StandardWebhooks.signature(id: Self.id, timestamp: Self.timestamp, body: Self.body, key: key)
        #expect(StandardWebhooks.verify(id: Self.id, timestamp: Self.timestamp, body: Self.body, signatureHeader: "v1,bm90IGl0 " + good, key: key))
        #expect(!StandardWebhooks.verify(id: Self.id + "x", timestamp: Self.timestamp, body: Self.body, signatureHeader: good, key: key))
        #expect(!StandardWebhooks.verify(id: Self.id, timestamp: Self.timestamp + 1, body: Self.body, signatureHeader: good, key: key))
        #expect(!StandardWebhooks.verify(id: Self.id, timestamp: Self.timestamp, body: Self.body + [0x20], signatureHeader: good, key: key))
        let other = try StandardWebhooks.key(fromSecret: "whsec_" + Data(repeating: 7, count: 32).base64EncodedString(), endpoint: "t")
        #expect(!StandardWebhooks.verify(id: Self.id, timestamp: Self.timestamp, body: Self.body, signatureHeader: good, key: other))
    }

    @Test("secrets must be whsec_ and 24 to 64 bytes of base64", arguments: [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_" + Data(repeating: 1, count: 8).base64EncodedString(),
        "whsec_" + Data(repeating: 1, count: 65).base64EncodedString(), "",
    ])
    func badSecrets(_ secret: String) {
        #expect(throws: WebhookSecretError.self) { try StandardWebhooks.key(fromSecret: secret, endpoint: "siem") }
    }

    @Test("a secret named by an unset variable is reported with the variable's name")
    func missingVariable() {
        let endpoint = WebhookEndpoint(name: "siem", url: "https://x.example", secret: .environment("NOT_SET_ANYWHERE"))
        #expect(throws: WebhookSecretError.self) { try endpoint.signingKey(environment: [:]) }
        do { _ = try endpoint.signingKey(environment: [:]) } catch { #expect(error.message.contains("NOT_SET_ANYWHERE")) }
        #expect((try? endpoint.signingKey(environment: ["NOT_SET_ANYWHERE": Self.secret])) != nil)
    }

    @Test("retries back off exponentially up to the maximum, with at most 20 % jitter")
    func backoff() {
        let schedule = RetrySchedule(initial: TimeSpan(seconds: 5), maximum: TimeSpan(seconds: 60), attempts: 5)
        #expect(schedule.delay(afterAttempt: 1, jitter: 0) == 5)
        #expect(schedule.delay(afterAttempt: 2, jitter: 0) == 10)
        #expect(schedule.delay(afterAttempt: 4, jitter: 0) == 40)
        #expect(schedule.delay(afterAttempt: 5, jitter: 0) == 60)
        #expect(schedule.delay(afterAttempt: 30, jitter: 1) == 72)
    }
}

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

@Suite("Policy: notifications")
struct NotificationPolicyTests {
    static let head = """
        version: 1
        principals:
          alice: {groups: [engineers]}
          bob: {groups: [dba]}
        resources:
          prod-db:
            kind: postgres
            roles:
              write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: write}

        """

    @Test("webhooks with events, format, secret and timeout are read")
    func valid() throws {
        let yaml = Self.head + """
            notifications:
              base_url: https://gatehouse.example.com/
              digest_interval: 30m
              retry: {initial: 2s, max: 10m, attempts: 5}
              webhooks:
                siem: {url: "https://siem.example.com/in", secret_env: SIEM_SECRET, events: [all], timeout: 5s}
                chat: {url: "https://hooks.slack.com/services/T/B/X", format: slack, events: [request.created, break_glass.used]}
            """
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.errors.isEmpty, "\(result.errors)")
        let settings = try #require(result.policy).notifications
        #expect(settings.baseURL == "https://gatehouse.example.com")
        #expect(settings.digestInterval == TimeSpan(seconds: 1800))
        #expect(settings.retry == RetrySchedule(initial: TimeSpan(seconds: 2), maximum: TimeSpan(seconds: 600), attempts: 5))
        #expect(settings.endpoints(for: .breakGlassUsed).map(\.name).sorted() == ["chat", "siem"])
        #expect(settings.endpoints(for: .digest).map(\.name) == ["siem"])
        // The secret is read where the server runs; its absence here is a warning, not an error.
        #expect(result.warnings.contains { $0.message.contains("SIEM_SECRET") })
    }

    @Test("an unusable webhook is reported with its line", arguments: [
        ("{url: \"not a url\", secret_env: S}", "is not a valid URL"),
        ("{url: \"ftp://files.example.com/x\", secret_env: S}", "only https://"),
        ("{url: \"https://user:pw@hooks.example.com/x\", secret_env: S}", "user name or password"),
        ("{url: \"https:///nohost\", secret_env: S}", "no host name"),
        ("{url: \"https://hooks.example.com/x\"}", "needs a secret"),
        ("{secret_env: S}", "needs a `url:`"),
        ("{url: \"https://hooks.example.com/x\", secret_env: S, events: [request.approvd]}", "did you mean `request.approved`"),
        ("{url: \"https://hooks.example.com/x\", format: teams}", "format of webhook `bad` must be one of"),
        ("{url: \"https://hooks.example.com/x\", secret_env: S, timeout: 5m}", "use 1s to 1m"),
    ])
    func invalid(_ endpoint: String, _ message: String) throws {
        let yaml = Self.head + "notifications:\n  webhooks:\n    bad: \(endpoint)\n"
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.policy == nil)
        let problem = try #require(result.errors.first { $0.message.contains(message) }, "\(result.errors)")
        #expect(problem.line == 12)
    }

    @Test("plain http to another host is a warning")
    func plainHTTP() throws {
        let yaml = Self.head + "notifications:\n  webhooks:\n    w: {url: \"http://hooks.example.com/x\", format: slack}\n"
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.errors.isEmpty)
        #expect(result.warnings.contains { $0.message.contains("unencrypted") })
    }
}

@Suite("Break-glass")
struct BreakGlassTests {
    static func policy(_ settings: (inout BreakGlassPolicy) -> Void = { _ in }) -> Policy {
        var policy = Fixture.policy()
        policy.breakGlass.enabled = true
        policy.breakGlass.requesters = ["dba"]
        policy.breakGlass.notify = ["security"]
        settings(&policy.breakGlass)
        return policy
    }

    static func input(duration: String = "", reason: String = "INC-9 database is down, killing runaway queries") -> NewRequestInput {
        NewRequestInput(resource: "prod-db", role: "admin", duration: duration, reason: reason)
    }

    @Test("grants at once, marked, for the policy's maximum by default, decided by break-glass")
    func grants() throws {
        let (request, grant) = try BreakGlass.open(Self.input(), requester: "carol", policy: Self.policy(), now: Fixture.t0,
                                                   requestId: "req_b", grantId: "grt_b")
        #expect(request.state == .approved)
        #expect(request.decidedBy == "break-glass")
        #expect(grant.breakGlass)
        #expect(grant.isActive(at: Fixture.t0))
        #expect(grant.expiresAt == Fixture.t0.addingTimeInterval(15 * 60))
        #expect(grant.allows == .dangerous)
    }

    @Test("refused when disabled, for others than the allowed groups, for service accounts, beyond the maximum, without a real reason")
    func refusals() {
        func code(_ policy: Policy, _ who: String, _ input: NewRequestInput) -> String? {
            do {
                _ = try BreakGlass.open(input, requester: who, policy: policy, now: Fixture.t0, requestId: "r", grantId: "g")
                return nil
            } catch { return error.code }
        }
        #expect(code(Self.policy { $0.enabled = false }, "carol", Self.input()) == "break_glass_disabled")
        #expect(code(Self.policy(), "alice", Self.input()) == "not_allowed_break_glass")
        #expect(code(Self.policy(), "deploy-bot", Self.input()) == "not_allowed_break_glass")
        #expect(code(Self.policy(), "carol", Self.input(duration: "16m")) == "duration_over_maximum")
        #expect(code(Self.policy(), "carol", Self.input(reason: "help")) == "reason_too_short")
        #expect(code(Self.policy(), "carol", NewRequestInput(resource: "prod-db", role: "root", duration: "", reason: "INC-9 it is down")) != nil)
    }

    @Test("`requesters` narrows who may request the role, never widens it")
    func narrowing() throws {
        let open = Self.policy { $0.requesters = [] }
        _ = try BreakGlass.open(Self.input(), requester: "alice", policy: open, now: Fixture.t0, requestId: "r", grantId: "g")
        #expect(throws: GatehouseError.self) {
            _ = try BreakGlass.open(Self.input(), requester: "erin", policy: open, now: Fixture.t0, requestId: "r", grantId: "g")
        }
        // dba narrows admin's requesters (engineers, dba): alice (engineers only) is out; nobody
        // outside the role's requesters gets in through break_glass.requesters.
        #expect(throws: GatehouseError.self) {
            _ = try BreakGlass.open(Self.input(), requester: "alice", policy: Self.policy(), now: Fixture.t0, requestId: "r", grantId: "g")
        }
        let api = NewRequestInput(resource: "billing-api", role: "operate", duration: "", reason: "INC-9 payments are failing")
        #expect(throws: GatehouseError.self) {
            _ = try BreakGlass.open(api, requester: "carol", policy: Self.policy(), now: Fixture.t0, requestId: "r", grantId: "g")
        }
    }

    @Test("the review is by someone else who may review, with a comment, once")
    func review() throws {
        let use = BreakGlassUse(grantId: "g", requestId: "r", principal: "carol", resource: "prod-db", role: "admin", reason: "x",
                                at: Fixture.t0, expiresAt: Fixture.t0, reviewRequired: true)
        let policy = Self.policy()
        #expect(throws: GatehouseError.self) { try BreakGlass.review(use, reviewer: "carol", comment: "fine", policy: policy, now: Fixture.t0) }
        #expect(throws: GatehouseError.self) { try BreakGlass.review(use, reviewer: "alice", comment: "fine", policy: policy, now: Fixture.t0) }
        #expect(throws: GatehouseError.self) { try BreakGlass.review(use, reviewer: "erin", comment: "  ", policy: policy, now: Fixture.t0) }
        let reviewed = try BreakGlass.review(use, reviewer: "erin", comment: "killed 3 queries; justified", policy: policy, now: Fixture.t0)
        #expect(!reviewed.awaitsReview)
        #expect(reviewed.reviewedBy == "erin")
        #expect(throws: GatehouseError.self) { try BreakGlass.review(reviewed, reviewer: "dave", comment: "again", policy: policy, now: Fixture.t0) }
    }
}
