import Crypto
import Foundation
import GatehouseTestSupport
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
        #expect(request["antispam"] == nil)
    }

    @Test("the request's anti-spam score has the API's shape: score, action and each signal as an object")
    func antispamAsTheAPIShowsIt() throws {
        var request = Self.request
        request.spam = SpamVerdict(score: 6, signals: [FiredSignal(signal: .burst, count: 3, points: 4, detail: "3 requests in 10m"),
                                                       FiredSignal(signal: .ticket, count: 1, points: -2, detail: "INC-1")], action: .throttle)
        let message = WebhookMessage(id: "msg_42", event: .requestCreated, at: Fixture.t0, audit: Self.audit("request.created"),
                                     request: request, recipients: ["bob"], link: nil)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(message.standardBody())) as? [String: Any])
        let sent = try #require(((object["data"] as? [String: Any])?["request"] as? [String: Any])?["antispam"] as? [String: Any])
        #expect(sent["score"] as? Int == 6 && sent["action"] as? String == "throttle")
        let signals = try #require(sent["signals"] as? [[String: Any]])
        #expect(signals.map { $0["signal"] as? String } == ["burst", "ticket"])
        #expect(signals.map { $0["points"] as? Int } == [4, -2] && signals.map { $0["count"] as? Int } == [3, 1])
        #expect(signals.first?["detail"] as? String == "3 requests in 10m")
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

    // MARK: the JSON writer

    /// What Foundation writes for the same document, with the options messages were written with before.
    static func foundation(_ value: JSONValue) throws -> [UInt8] {
        func object(_ value: JSONValue) -> Any {
            switch value {
            case .string(let text): text
            case .int(let number): number
            case .bool(let flag): flag
            case .null: NSNull()
            case .array(let items): items.map(object)
            case .object(let members): members.mapValues(object)
            }
        }
        return Array(try JSONSerialization.data(withJSONObject: object(value), options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    /// Random text over characters that exercise every escape: quotes, backslashes, slashes, every control
    /// character, DEL, CR LF as one character, U+2028, non-ASCII letters and an emoji.
    static func randomText(_ generator: inout SplitMix64) -> String {
        let alphabet = ["\"", "\\", "/", "\r\n", "\u{7f}", "\u{2028}", "é", "漢", "😀", "a", "Z", "0", " ", "<", "&", "_"]
            + (0..<32).map { String(UnicodeScalar(UInt8($0))) }
        return (0..<Int.random(in: 0...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }.joined()
    }

    /// A random document whose object keys are made as message keys are (lowercase ASCII and `_`).
    static func randomValue(_ generator: inout SplitMix64, depth: Int = 0) -> JSONValue {
        switch Int.random(in: 0..<(depth > 2 ? 4 : 6), using: &generator) {
        case 0: return .string(randomText(&generator))
        case 1: return .int(Int.random(in: Int.min...Int.max, using: &generator) >> Int.random(in: 0...63, using: &generator))
        case 2: return .bool(Bool.random(using: &generator))
        case 3: return .null
        case 4: return .array((0..<Int.random(in: 0...4, using: &generator)).map { _ in randomValue(&generator, depth: depth + 1) })
        default:
            let keys = (0..<Int.random(in: 0...6, using: &generator)).map { _ in
                String((0..<Int.random(in: 1...6, using: &generator)).map { _ in Array("abcxyz_").randomElement(using: &generator)! })
            }
            return .object(Dictionary(keys.map { ($0, randomValue(&generator, depth: depth + 1)) }, uniquingKeysWith: { a, _ in a }))
        }
    }

    @Test("documents are written byte for byte as JSONSerialization writes them with sorted keys and unescaped slashes (5,000 random documents)")
    func writerMatchesFoundation() throws {
        var generator = SplitMix64(state: 20_261_203)
        for _ in 0..<5_000 {
            let value = JSONValue.array([Self.randomValue(&generator)])  // Foundation writes only arrays and objects at the top
            let ours = value.bytes(), theirs = try Self.foundation(value)
            #expect(ours == theirs, "\(String(decoding: ours, as: UTF8.self)) != \(String(decoding: theirs, as: UTF8.self))")
            if ours != theirs { return }
        }
    }

    @Test("every kind of message, standard and Slack, with and without a request, is byte for byte what JSONSerialization writes for it")
    func messagesMatchFoundation() throws {
        var generator = SplitMix64(state: 7)
        for event in WebhookEvent.allCases {
            for _ in 0..<40 {
                var request = Self.request
                request.reason = Self.randomText(&generator)
                request.requester = Self.randomText(&generator)
                request.ticket = Bool.random(using: &generator) ? Self.randomText(&generator) : nil
                request.spam = Bool.random(using: &generator) ? SpamVerdict(score: Int.random(in: 0...100, using: &generator), signals: [], action: .allow) : nil
                let details = ["principal": Self.randomText(&generator), "role": "write", "comment": Self.randomText(&generator),
                               "expires_at": Fixture.t0.rfc3339, "request_id": "req_1", "summary": Self.randomText(&generator)]
                let message = WebhookMessage(id: "msg_42", event: event, at: Fixture.t0, audit: Self.audit("request.created", details: details),
                                             request: Bool.random(using: &generator) ? request : nil,
                                             recipients: (0..<Int.random(in: 0...3, using: &generator)).map { _ in Self.randomText(&generator) },
                                             link: Bool.random(using: &generator) ? "https://gh.example/requests/req_1" : nil)
                for body in [message.standardBody(), message.slackBody()] {
                    let parsed = try JSONSerialization.jsonObject(with: Data(body))
                    let again = Array(try JSONSerialization.data(withJSONObject: parsed, options: [.sortedKeys, .withoutEscapingSlashes]))
                    #expect(body == again, "\(String(decoding: body, as: UTF8.self))")
                }
            }
        }
    }
}
