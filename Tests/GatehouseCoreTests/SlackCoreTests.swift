import Foundation
import GatehouseTestSupport
import Testing
@testable import GatehouseCore

@Suite("Slack: policy, request signing, interaction payloads, routing")
struct SlackCoreTests {
    static let head = NotificationPolicyTests.head.replacingOccurrences(of: "  bob: {groups: [dba]}", with: "  bob: {groups: [dba]}\n  ops-bot: {groups: [dba], kind: service}")

    /// `slack` is the section's body; a `team_id` is added unless it names one (or `team: false`).
    static func load(_ slack: String, team: Bool = true) -> PolicyLoadResult {
        let teamLine = team && !slack.contains("team_id") ? "    team_id: T0TEAM0001\n" : ""
        return PolicyLoader.load(yaml: head + "notifications:\n  base_url: https://gatehouse.example.com\n  slack:\n" + teamLine + slack)
    }

    @Test("a full notifications.slack section is read")
    func valid() throws {
        let result = Self.load("""
                bot_token_env: SLACK_BOT_TOKEN
                signing_secret_file: /etc/gatehouse/slack-signing-secret
                channel: "#access-requests"
                routes:
                  resources: {prod-db: C0PRODDB01}
                  approver_groups: {dba: G0DBATEAM1}
                direct_messages: true
                timeout: 5s
            """)
        #expect(result.errors.isEmpty, "\(result.errors)")
        let slack = try #require(result.policy?.notifications.slack)
        #expect(slack.botToken == .environment("SLACK_BOT_TOKEN"))
        #expect(slack.signingSecret == .file("/etc/gatehouse/slack-signing-secret"))
        #expect(slack.channel == "#access-requests" && slack.directMessages && slack.timeout == TimeSpan(seconds: 5))
        #expect(slack.apiURL == "https://slack.com/api")
        #expect(slack.teamID == "T0TEAM0001")
        // Missing secrets are warnings: they may exist only where the server runs.
        #expect(result.warnings.contains { $0.message.contains("SLACK_BOT_TOKEN") })
    }

    @Test("policy check names each mistake in notifications.slack", arguments: [
        ("channel: C0PROD01234", "needs `bot_token_env:`"),
        ("bot_token_env: A\n    bot_token_file: /x\n    signing_secret_env: B\n    channel: C0PROD01234", "not both"),
        ("bot_token_env: A\n    channel: C0PROD01234", "needs `signing_secret_env:`"),
        ("bot_token_env: A\n    signing_secret_env: B", "sends nothing"),
        ("bot_token_env: A\n    signing_secret_env: B\n    channel: access-requests", "give a channel id"),
        ("bot_token_env: A\n    signing_secret_env: B\n    routes: {resources: {prod-dv: C0PROD01234}}", "did you mean `prod-db`"),
        ("bot_token_env: A\n    signing_secret_env: B\n    routes: {approver_groups: {dbas: C0PROD01234}}", "dbas"),
        ("bot_token_env: A\n    signing_secret_env: B\n    channel: C0PROD01234\n    api_url: http://slack.example.com/api", "api_url must be an https URL"),
        ("bot_token_env: A\n    signing_secret_env: B\n    channel: C0PROD01234\n    timeout: 2m", "use 1s to 30s"),
        ("bot_token_env: A\n    signing_secret_env: B\n    channel: C0PROD01234\n    token: xoxb-1", "token"),
        ("bot_token_env: A\n    signing_secret_env: B\n    channel: C0PROD01234\n    team_id: gatehouse", "give the workspace id"),
    ])
    func mistakes(_ yaml: String, _ expected: String) {
        let result = Self.load("    " + yaml)
        #expect(result.policy == nil)
        #expect(result.errors.contains { $0.message.contains(expected) && $0.line > 0 }, "\(result.errors.map(\.message))")
    }

    @Test("a workspace is required: clicks from any other one decide nothing")
    func teamRequired() {
        let result = Self.load("    bot_token_env: A\n    signing_secret_env: B\n    channel: C0PROD01234", team: false)
        #expect(result.policy == nil)
        #expect(result.errors.contains { $0.message.contains("needs `team_id:`") })
    }

    @Test("Slack's documented signing example verifies; a changed body, secret or old timestamp does not")
    func signature() {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5"
        let body = Array("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c".utf8)
        let documented = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        let then = Date(timeIntervalSince1970: 1_531_420_618)
        #expect(SlackSignature.signature(timestamp: "1531420618", body: body, secret: secret) == documented)
        #expect(SlackSignature.check(timestamp: "1531420618", signature: documented, body: body, secret: secret, now: then.addingTimeInterval(299)) == nil)
        #expect(SlackSignature.check(timestamp: "1531420618", signature: documented, body: body, secret: secret, now: then.addingTimeInterval(301)) == .stale)
        #expect(SlackSignature.check(timestamp: "1531420618", signature: documented, body: body, secret: secret, now: then.addingTimeInterval(-301)) == .stale)
        #expect(SlackSignature.check(timestamp: "1531420618", signature: documented, body: body + [0x20], secret: secret, now: then) == .mismatch)
        #expect(SlackSignature.check(timestamp: "1531420618", signature: documented, body: body, secret: secret + "x", now: then) == .mismatch)
        #expect(SlackSignature.check(timestamp: "1531420619", signature: documented, body: body, secret: secret, now: then) == .mismatch)
        #expect(SlackSignature.check(timestamp: "15314206l8", signature: documented, body: body, secret: secret, now: then) == .stale)
        #expect(SlackSignature.check(timestamp: nil, signature: documented, body: body, secret: secret, now: then) == .missing)
        #expect(SlackSignature.check(timestamp: "1531420618", signature: "", body: body, secret: secret, now: then) == .missing)
    }

    static func form(_ payload: [String: Any]) -> [UInt8] {
        let json = String(decoding: try! JSONSerialization.data(withJSONObject: payload), as: UTF8.self)
        return Array("payload=\(json.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)".utf8)
    }

    static func click(_ action: String, value: String) -> [String: Any] {
        ["type": "block_actions", "team": ["id": "T0TEAM0001"], "user": ["id": "U0PERSON01"], "trigger_id": "1.2.abc",
         "response_url": "https://hooks.slack.com/actions/T/1/x", "actions": [["action_id": action, "value": value, "action_ts": "1.5"]]]
    }

    @Test("clicks and the Deny form are read from Slack's payloads; anything else is unknown or malformed")
    func interactions() throws {
        let approve = try SlackInteraction.parse(formBody: Self.form(Self.click("gatehouse_approve", value: "req_abc123")))
        #expect(approve.kind == .approve(requestId: "req_abc123") && approve.user == "U0PERSON01" && approve.team == "T0TEAM0001")
        #expect(approve.responseURL == "https://hooks.slack.com/actions/T/1/x")
        let deny = try SlackInteraction.parse(formBody: Self.form(Self.click("gatehouse_deny", value: "req_abc123")))
        #expect(deny.kind == .openDeny(requestId: "req_abc123", triggerId: "1.2.abc"))
        #expect(try SlackInteraction.parse(formBody: Self.form(Self.click("gatehouse_open", value: ""))).kind == .ignored)
        #expect(try SlackInteraction.parse(formBody: Self.form(Self.click("gatehouse_approve", value: "grt_abc"))).kind == .unknown("gatehouse_approve"))
        #expect(try SlackInteraction.parse(formBody: Self.form(Self.click("gatehouse_approve", value: "req_a'; DROP"))).kind == .unknown("gatehouse_approve"))
        #expect(try SlackInteraction.parse(formBody: Self.form(Self.click("promote", value: "req_abc"))).kind == .unknown("promote"))
        #expect(try SlackInteraction.parse(formBody: Self.form(Self.click("gatehouse_link", value: ""))).kind == .startLink(triggerId: "1.2.abc"))
        var linkView = SlackMessages.linkModal(responseURL: nil)
        linkView["state"] = ["values": ["code": ["code": ["type": "plain_text_input", "value": "k7qf 9xmw"]]]]
        let linked = try SlackInteraction.parse(formBody: Self.form(["type": "view_submission", "team": ["id": "T0TEAM0001"],
                                                                    "user": ["id": "U0PERSON01", "team_id": "T0OTHER001"], "view": linkView]))
        #expect(linked.kind == .link(code: "k7qf 9xmw") && linked.userTeam == "T0OTHER001")
        #expect(SlackInteraction.normalizedLinkCode("k7qf 9xmw") == "K7QF9XMW")
        #expect(SlackInteraction.normalizedLinkCode("K7QF-9XM0") == nil, "0 is not in the alphabet")
        #expect(SlackInteraction.normalizedLinkCode(LinkCode.make()) != nil)
        let modal = SlackMessages.denyModal(AccessRequest(id: "req_abc123", requester: "alice", resource: "prod-db", role: "write",
                                                          duration: TimeSpan(seconds: 600), reason: "INC-1 fix", ticket: nil, state: .pending,
                                                          approvalsRequired: 1, createdAt: Date(), pendingExpiresAt: Date()),
                                            responseURL: "https://hooks.slack.com/actions/T/1/x")
        var view = modal
        view["state"] = ["values": ["comment": ["comment": ["type": "plain_text_input", "value": "not now"]]]]
        let submitted = try SlackInteraction.parse(formBody: Self.form(["type": "view_submission", "team": ["id": "T0TEAM0001"],
                                                                       "user": ["id": "U0PERSON01"], "view": view]))
        #expect(submitted.kind == .deny(requestId: "req_abc123", comment: "not now"))
        #expect(submitted.responseURL == "https://hooks.slack.com/actions/T/1/x", "the click's response_url travels in the modal")
        for broken in [Array("payload=%7B".utf8), Array("text=hello".utf8), Self.form(["type": "block_actions", "team": ["id": "T0TEAM0001"]]),
                       Self.form(["type": "block_actions", "user": ["id": "U0PERSON01"]]),
                       Self.form(["type": "block_actions", "user": ["id": "<script>"], "team": ["id": "T0TEAM0001"]])] {
            #expect(throws: SlackInteraction.Malformed.self) { try SlackInteraction.parse(formBody: broken) }
        }
    }

    /// The payloads a signed delivery may carry: Slack's own shapes.
    static var validPayloads: [[String: Any]] {
        var deny = SlackMessages.denyModal(AccessRequest(id: "req_abc123", requester: "alice", resource: "prod-db", role: "write",
                                                         duration: TimeSpan(seconds: 600), reason: "INC-1 fix", ticket: nil, state: .pending,
                                                         approvalsRequired: 1, createdAt: Date(), pendingExpiresAt: Date()),
                                           responseURL: "https://hooks.slack.com/actions/T/1/x")
        deny["state"] = ["values": ["comment": ["comment": ["type": "plain_text_input", "value": "not now"]]]]
        var link = SlackMessages.linkModal(responseURL: nil)
        link["state"] = ["values": ["code": ["code": ["type": "plain_text_input", "value": "k7qf 9xmw"]]]]
        return [click("gatehouse_approve", value: "req_abc123"), click("gatehouse_deny", value: "req_abc123"), click("gatehouse_link", value: ""),
                ["type": "view_submission", "team": ["id": "T0TEAM0001"], "user": ["id": "U0PERSON01"], "view": deny],
                ["type": "view_submission", "team": ["id": "T0TEAM0001"], "user": ["id": "U0PERSON01", "team_id": "T0OTHER001"], "view": link],
                ["type": "view_closed", "team": ["id": "T0TEAM0001"], "user": ["id": "U0PERSON01"], "view": deny]]
    }

    /// What anyone holding the signing secret (or Slack, mistaken) could send: Slack's payloads with
    /// values swapped for other types, keys dropped, strings grown, private metadata rewritten, and the
    /// form's bytes flipped, cut and repeated. Each is read into an interaction whose ids are well formed,
    /// or refused as malformed: never a crash, never a request id or Slack id the checks did not pass.
    @Test("mutated and hostile interaction payloads are refused or read safely")
    func hostilePayloads() throws {
        var mutator = PayloadMutator(seed: 20261204)
        let valid = Self.validPayloads
        var accepted = 0, refused = 0
        for _ in 0..<4_000 {
            let payload = mutator.mutate(mutator.pick(valid)) as? [String: Any] ?? [:]
            let body = mutator.chance(3) ? mutator.mutate(bytes: Self.form(payload)) : Self.form(payload)
            do {
                let interaction = try SlackInteraction.parse(formBody: body)
                accepted += 1
                #expect(SlackSettings.isSlackID(interaction.user) && SlackSettings.isSlackID(interaction.team), "\(interaction)")
                switch interaction.kind {
                case let .approve(id), let .openDeny(id, _), let .deny(id, _):
                    #expect(SlackInteraction.isRequestId(id), "\(interaction)")
                case let .unknown(what):
                    #expect(what.count <= 80)
                default:
                    break
                }
            } catch {
                refused += 1
                #expect(!error.message.isEmpty)
            }
        }
        // Both answers were exercised, not only one of them.
        #expect(accepted > 500 && refused > 500, "accepted \(accepted), refused \(refused)")
        // Nesting far deeper than any payload, and a body of nothing but separators.
        let deep = String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000)
        for body in [Array("payload=\(deep)".utf8), Array(String(repeating: "&=", count: 30_000).utf8), Array("payload=".utf8), []] {
            #expect(throws: SlackInteraction.Malformed.self) { try SlackInteraction.parse(formBody: body) }
        }
    }

    @Test("answers go only to Slack's hooks or the configured stand-in, never to an address a payload names")
    func responseURLs() {
        let api = "https://slack.com/api"
        #expect(SlackInteraction.isResponseURLAllowed("https://hooks.slack.com/actions/T/1/x", apiURL: api))
        #expect(!SlackInteraction.isResponseURLAllowed("https://slack.com/api/chat.postMessage", apiURL: api), "only a loopback api_url's host is trusted")
        #expect(!SlackInteraction.isResponseURLAllowed("https://hooks.slack.com:8443/x", apiURL: api))
        #expect(!SlackInteraction.isResponseURLAllowed("http://hooks.slack.com/actions/T/1/x", apiURL: api))
        #expect(!SlackInteraction.isResponseURLAllowed("https://hooks.slack.com.evil.example/x", apiURL: api))
        #expect(!SlackInteraction.isResponseURLAllowed("http://169.254.169.254/latest/meta-data", apiURL: api))
        #expect(!SlackInteraction.isResponseURLAllowed("https://slack.example.com/x", apiURL: "https://slack.example.com/api"))
        #expect(SlackInteraction.isResponseURLAllowed("http://127.0.0.1:8080/respond", apiURL: "http://127.0.0.1:8080/api"))
        #expect(!SlackInteraction.isResponseURLAllowed("http://127.0.0.1:8081/respond", apiURL: "http://127.0.0.1:8080/api"))
    }

    @Test("a request goes to its resource's channel and its approver groups' channels, else the default one")
    func routing() throws {
        let policy = try #require(Self.load("""
                bot_token_env: A
                signing_secret_env: B
                channel: C0DEFAULT01
                routes: {approver_groups: {dba: C0DBATEAM1}}
            """).policy)
        let request = AccessRequest(id: "req_x", requester: "alice", resource: "prod-db", role: "write", duration: TimeSpan(seconds: 60),
                                    reason: "r", ticket: nil, state: .pending, approvalsRequired: 1, createdAt: Date(), pendingExpiresAt: Date())
        var slack = try #require(policy.notifications.slack)
        #expect(slack.channels(for: request, policy: policy) == ["C0DBATEAM1"])
        slack.resourceChannels = ["prod-db": "C0PRODDB01"]
        #expect(slack.channels(for: request, policy: policy) == ["C0PRODDB01", "C0DBATEAM1"])
        slack.resourceChannels = [:]
        slack.approverGroupChannels = [:]
        #expect(slack.channels(for: request, policy: policy) == ["C0DEFAULT01"])
    }

    @Test("what people wrote reaches Slack as plain text: no mentions, no links, no markup")
    func escaping() throws {
        let request = AccessRequest(id: "req_x", requester: "alice", resource: "prod-db", role: "write", duration: TimeSpan(seconds: 60),
                                    reason: "<!channel> see <https://evil.example|the runbook> *now*", ticket: "INC-1 <@U0BOSS>", state: .pending,
                                    approvalsRequired: 1, createdAt: Date(), pendingExpiresAt: Date())
        let message = SlackMessages.request(request, approvals: [], link: "https://gatehouse.example.com/requests/req_x")
        let blocks = try #require(message["blocks"] as? [[String: Any]])
        for block in blocks {
            let text = block["text"] as? [String: Any]
            if let raw = text?["text"] as? String, raw.contains("<!channel>") { #expect(text?["type"] as? String == "plain_text") }
            for field in block["fields"] as? [[String: Any]] ?? [] {
                #expect(!(field["text"] as? String ?? "").contains("<@U0BOSS>"), "mrkdwn fields are escaped")
            }
        }
        #expect(!(message["text"] as? String ?? "").contains("<"))
        #expect(SlackMessages.ephemeral("<!here> & <@U1>")["text"] as? String == "&lt;!here&gt; &amp; &lt;@U1&gt;")
    }

    @Test("outbox work survives its round trip through the store")
    func operations() {
        for operation in [SlackOperation.post(requestId: "req_a"), .update(requestId: "req_b"), .digest(recipient: "carol", requestIds: ["req_a", "req_b"]),
                          .notice(message: "{\"text\":\"x\"}")] {
            #expect(SlackOperation.decode(operation.encoded) == operation)
        }
        #expect(SlackOperation.decode("{\"op\":\"explode\"}") == nil)
        #expect(SlackOperation.decode("not json") == nil)
    }
}
