import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseServer
import GatehouseStore
import GatehouseTestSupport
import Testing

/// Approve and deny from Slack, against a local stand-in that speaks Slack's Web API and signs
/// interactions as Slack does: the outbox posts and updates the messages, clicks come back signed,
/// and every decision goes through the same rules as the API.
@Suite("Slack: interactive messages, signed clicks, the same rules as every way in", .serialized)
struct SlackTests {
    static let issuer = "http://127.0.0.1:9/o"

    static func policy(_ slack: SlackStandIn) -> String {
        setenv("GATEHOUSE_TEST_SLACK_BOT", SlackStandIn.botToken, 1)
        setenv("GATEHOUSE_TEST_SLACK_SIGNING", SlackStandIn.signingSecret, 1)
        return TestServer.policyYAML + """

            identity:
              oidc:
                issuer: \(issuer)
                client_id: gatehouse
                client_secret_env: GATEHOUSE_TEST_SLACK_BOT
                redirect_uri: http://127.0.0.1:9/auth/callback
                allowed_email_domains: [example.com]
            notifications:
              base_url: http://127.0.0.1:9
              retry: {initial: 1s, max: 1s, attempts: 10}
              slack:
                bot_token_env: GATEHOUSE_TEST_SLACK_BOT
                signing_secret_env: GATEHOUSE_TEST_SLACK_SIGNING
                team_id: \(SlackStandIn.team)
                api_url: \(slack.apiURL)
                channel: C0GENERAL01
                routes: {resources: {prod-host: C0HOSTS001}}
                direct_messages: true
            """
    }

    /// A person signed in through the provider (claims as a verified ID token carries them).
    static func signIn(_ server: TestServer, _ name: String) async throws -> SignIns.Established {
        let now = server.clock.now()
        let claims = IDTokenClaims(issuer: issuer, subject: "sub-\(name)", audience: ["gatehouse"], expiresAt: now.addingTimeInterval(300),
                                   issuedAt: now, preferredUsername: name, email: "\(name)@example.com", emailVerified: true)
        return try await server.service.signIns.establish(claims: claims, purpose: .cli, sourceIP: nil)
    }

    static func interact(_ server: TestServer, _ body: [UInt8], headers: [(String, String)]? = nil) async throws -> TestServer.Reply {
        try await server.send(.POST, "/v1/integrations/slack/interactions", token: nil, rawBody: Data(body),
                              contentType: "application/x-www-form-urlencoded", headers: headers ?? SlackStandIn.headers(for: body))
    }

    static func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
        guard try await waitUntil(timeout: .seconds(15), interval: .milliseconds(50), condition) else { throw TestFailure("never happened: \(what)") }
    }

    static func state(_ server: TestServer, _ id: String) async throws -> String? {
        try await server.readRequest(TestServer.adminToken, id).string("state")
    }

    static func audit(_ server: TestServer, _ action: String) async throws -> [[String: Any]] {
        let reply = try await server.listAudit(TestServer.adminToken, limit: 1000)
        return (reply.json["events"] as? [[String: Any]] ?? []).filter { $0["action"] as? String == action }
    }

    @Test("an approval and a denial with its comment made by clicking; every copy of each message shows the outcome without buttons")
    func approveAndDenyByClicking() async throws {
        let slack = try await SlackStandIn.start()
        await slack.state.add(.init(id: "UBOB", email: "bob@example.com", confirmed: true))
        await slack.state.add(.init(id: "UCAROL", email: "Carol@Example.com", confirmed: true))
        try await TestServer.with(policy: Self.policy(slack), realTime: true, outbox: true) { server in
            let alice = try await Self.signIn(server, "alice")
            _ = try await Self.signIn(server, "bob")
            _ = try await Self.signIn(server, "carol")

            // The request reaches its approvers: posted to the default channel with Approve and Deny.
            let id = try #require(try await server.request(alice.secret).string("id"))
            try await Self.eventually("the request is posted") { await slack.calls("chat.postMessage").contains { $0.text.contains(id) } }
            let posted = try #require(await slack.calls("chat.postMessage").first { $0.text.contains(id) })
            #expect(posted.channel == "C0GENERAL01")
            #expect(posted.hasButtons)
            #expect(posted.text.contains("INC-4411 fix stuck migration"))

            // Bob clicks Approve: Slack's profile confirms bob@example.com, the address bob signed in with.
            let reply = try await Self.interact(server, slack.click(SlackInteraction.approveAction, request: id, user: "UBOB"))
            #expect(reply.status == 200)
            try await Self.eventually("approved") { try await Self.state(server, id) == "approved" }
            try await Self.eventually("bob is told") { await slack.responses(for: "UBOB").contains { $0.contains("You approved \(id)") } }
            try await Self.eventually("the message is updated") {
                await slack.calls("chat.update").contains { $0.text.contains(id) && $0.channel == "C0GENERAL01" && !$0.hasButtons && $0.text.contains("Approved") }
            }
            let approved = try #require(try await Self.audit(server, "request.approved").first { $0["subject"] as? String == id })
            let details = approved["details"] as? [String: String] ?? [:]
            #expect(approved["actor"] as? String == "bob")
            #expect(details["via"] == "slack" && details["slack_user"] == "UBOB" && details["slack_team"] == SlackStandIn.team)
            let linked = try await Self.audit(server, "slack.linked")
            #expect(linked.contains { ($0["details"] as? [String: String])?["principal"] == "bob" && ($0["details"] as? [String: String])?["via"] == "email" })

            // A request on prod-host goes to its routed channel, and (bob is linked now) to bob directly.
            let other = try #require(try await server.request(alice.secret, resource: "prod-host", role: "operate").string("id"))
            try await Self.eventually("posted to the route and to bob") {
                let posts = await slack.calls("chat.postMessage").filter { $0.text.contains(other) }
                return Set(posts.compactMap(\.channel)) == ["C0HOSTS001", "UBOB"]
            }
            // Carol clicks Deny: a modal asks for the comment.
            _ = try await Self.interact(server, slack.click(SlackInteraction.denyAction, request: other, user: "UCAROL", trigger: "trigger-carol"))
            try await Self.eventually("the Deny form opens") { await slack.calls("views.open").contains { $0.body["trigger_id"] as? String == "trigger-carol" } }
            let opened = try #require(await slack.calls("views.open").last)
            let modal = try #require(opened.body["view"] as? [String: Any])
            #expect(modal["callback_id"] as? String == SlackInteraction.denyModal)
            // A blank comment is refused in the form itself; nothing is decided.
            let blank = try await Self.interact(server, slack.submit(modal, "   ", user: "UCAROL"))
            #expect(blank.json["response_action"] as? String == "errors")
            #expect(try await Self.state(server, other) == "pending")
            // The corrected form comes back with the same view id and hash: it is not a repeat.
            let submitted = try await Self.interact(server, slack.submit(modal, "not during the freeze", user: "UCAROL"))
            #expect(submitted.status == 200)
            try await Self.eventually("denied") { try await Self.state(server, other) == "denied" }
            let denied = try #require(try await Self.audit(server, "request.denied").first { $0["subject"] as? String == other })
            #expect(denied["actor"] as? String == "carol")
            #expect((denied["details"] as? [String: String])?["comment"] == "not during the freeze")
            #expect((denied["details"] as? [String: String])?["slack_user"] == "UCAROL")
            try await Self.eventually("both copies show the denial") {
                let updates = await slack.calls("chat.update").filter { $0.text.contains(other) && !$0.hasButtons && $0.text.contains("Denied") }
                return Set(updates.compactMap(\.channel)) == ["C0HOSTS001", "UBOB"]
            }

            // One exact statement: its message shows the rebuilt text and the risk; a cancel updates it.
            let action = try #require(try await server.requestAction(alice.secret, text: "DELETE FROM orders /* tidy */ WHERE created_at < now() - interval '1 year'").string("id"))
            try await Self.eventually("the statement is posted") { await slack.calls("chat.postMessage").contains { $0.text.contains(action) } }
            let statement = try #require(await slack.calls("chat.postMessage").first { $0.text.contains(action) })
            #expect(statement.text.contains("DELETE FROM orders WHERE"), "the rebuilt statement, without its comment")
            #expect(!statement.text.contains("tidy"))
            #expect(try await server.cancel(alice.secret, action).status == 200)
            try await Self.eventually("the cancel shows") { await slack.calls("chat.update").contains { $0.text.contains(action) && $0.text.contains("Canceled") } }

            // Every message Slack received, the Deny form, a digest and an answer pass slack_sdk's Block Kit models.
            var messages: [String: Any] = [:]
            for (index, call) in await slack.state.calls.enumerated() where call.method != "views.open" {
                var body = call.body
                body.removeValue(forKey: "channel"); body.removeValue(forKey: "ts"); body.removeValue(forKey: "unfurl_links")
                messages["\(index)-\(call.method)"] = body
            }
            messages["deny-modal"] = modal
            var stored: [AccessRequest] = []
            for request in [id, other, action] { if let view = try await server.service.slack.requestForMessage(request) { stored.append(view.request) } }
            messages["digest"] = SlackMessages.digest(recipient: "carol", requests: stored + stored + stored + stored, link: "http://127.0.0.1:9/inbox")
            messages["ephemeral"] = SlackMessages.ephemeral("Nothing was decided: <@channel> & friends")
            messages["not-linked"] = SlackMessages.notLinked("Nothing was decided: your Slack account is not linked to a Gatehouse person.")
            messages["link-modal"] = SlackMessages.linkModal(responseURL: slack.responseURL)
            for state in [RequestState.expired, .quarantined] {
                var request = stored[0]
                request.state = state
                messages["request-\(state.rawValue)"] = SlackMessages.request(request, approvals: [], link: "http://127.0.0.1:9/requests/\(request.id)")
            }
            let breakGlass = AuditEvent(seq: 7, at: Date(), actor: "alice", action: "break_glass.used", subject: "grt_x", resource: "prod-db",
                                        details: ["principal": "alice", "role": "write", "expires_at": Date().rfc3339, "reason": "<!here> prod is down"],
                                        prevHash: "", hash: "abc")
            let notice = WebhookMessage(id: "msg_7", event: .breakGlassUsed, at: Date(), audit: breakGlass, request: nil, recipients: ["erin"],
                                        link: "http://127.0.0.1:9/break-glass")
            messages["break-glass-notice"] = try JSONSerialization.jsonObject(with: Data(notice.slackBody()))
            let file = server.folder.appendingPathComponent("slack-messages.json")
            try JSONSerialization.data(withJSONObject: messages).write(to: file)
            let verdict = try await RepositoryScript.run("slack-blocks.sh", [file.path])
            #expect(verdict.contains("\(messages.count) messages checked, 0 problems"), "\(verdict)")
        }
        await slack.stop()
    }

    @Test("forged and replayed signatures, an unlinked user, self-approval, a decided request and an unknown button decide nothing")
    func refusalsDecideNothing() async throws {
        let slack = try await SlackStandIn.start()
        await slack.state.add(.init(id: "UBOB", email: "bob@example.com", confirmed: true))
        await slack.state.add(.init(id: "UCAROL", email: "carol@example.com", confirmed: true))
        // Slack has not confirmed this address: it links nobody.
        await slack.state.add(.init(id: "UMALLORY", email: "frank@example.com", confirmed: false))
        await slack.state.add(.init(id: "UOTHER", email: nil, confirmed: false))
        try await TestServer.with(policy: Self.policy(slack), realTime: true, outbox: true) { server in
            let alice = try await Self.signIn(server, "alice")
            let bob = try await Self.signIn(server, "bob")
            _ = try await Self.signIn(server, "carol")
            let frank = try await Self.signIn(server, "frank")
            let id = try #require(try await server.request(alice.secret).string("id"))
            let click = slack.click(SlackInteraction.approveAction, request: id, user: "UBOB")

            // Signed with another secret, signed ten minutes ago, or not signed: 401, and Slack is never asked who clicked.
            let forged = try await Self.interact(server, click, headers: SlackStandIn.headers(for: click, secret: "not-the-signing-secret"))
            #expect(forged.status == 401 && forged.string("code") == "slack_signature_invalid")
            let old = try await Self.interact(server, click, headers: SlackStandIn.headers(for: click, at: Date().addingTimeInterval(-600)))
            #expect(old.status == 401 && old.string("code") == "slack_timestamp_stale")
            let unsigned = try await Self.interact(server, click, headers: [])
            #expect(unsigned.status == 401 && unsigned.string("code") == "slack_signature_missing")
            let tampered = Array(String(decoding: click, as: UTF8.self).replacingOccurrences(of: "UBOB", with: "UCAROL").utf8)
            #expect(try await Self.interact(server, tampered, headers: SlackStandIn.headers(for: click)).status == 401)
            let garbage: [UInt8] = Array("payload=%7Bnot json".utf8)
            let bad = try await Self.interact(server, garbage)
            #expect(bad.status == 400 && bad.string("code") == "slack_payload_invalid")
            try await Task.sleep(for: .milliseconds(300))
            #expect(await slack.calls("users.info").isEmpty)
            #expect(try await Self.state(server, id) == "pending")

            // An address Slack has not confirmed links nobody: the person is told how to link, nothing is decided.
            _ = try await Self.interact(server, slack.click(SlackInteraction.approveAction, request: id, user: "UMALLORY"))
            try await Self.eventually("mallory is told") { await slack.responses(for: "UMALLORY").contains { $0.contains("not linked") } }
            #expect(try await Self.state(server, id) == "pending")
            try await Self.eventually("the refusal is audited") {
                try await Self.audit(server, "slack.action_refused").contains { ($0["details"] as? [String: String])?["code"] == "slack_not_linked" }
            }

            // Self-approval: bob is an engineer and a dba; his own request cannot be approved by his click.
            let own = try #require(try await server.request(bob.secret).string("id"))
            _ = try await Self.interact(server, slack.click(SlackInteraction.approveAction, request: own, user: "UBOB"))
            try await Self.eventually("bob is refused") { await slack.responses(for: "UBOB").contains { $0.contains("your own request") } }
            #expect(try await Self.state(server, own) == "pending")

            // Carol approves; a second click on the decided request is refused; the same delivery again is dropped.
            let carolClick = slack.click(SlackInteraction.approveAction, request: own, user: "UCAROL")
            _ = try await Self.interact(server, carolClick)
            try await Self.eventually("approved by carol") { try await Self.state(server, own) == "approved" }
            _ = try await Self.interact(server, slack.click(SlackInteraction.approveAction, request: own, user: "UCAROL"))
            try await Self.eventually("carol is told it is decided") { await slack.responses(for: "UCAROL").contains { $0.hasPrefix("Nothing was decided") } }
            let refusalsBefore = try await Self.audit(server, "slack.action_refused").count
            #expect(try await Self.interact(server, carolClick).status == 200)
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await Self.audit(server, "slack.action_refused").count == refusalsBefore, "a repeated delivery is dropped")
            #expect(try await Self.audit(server, "approval.recorded").filter { $0["subject"] as? String == own }.isEmpty)

            // A button Gatehouse never made decides nothing.
            _ = try await Self.interact(server, slack.click("gatehouse_promote", request: id, user: "UBOB"))
            try await Self.eventually("bob hears it is unknown") { await slack.responses(for: "UBOB").contains { $0.contains("gatehouse_promote") } }
            #expect(try await Self.state(server, id) == "pending")

            // A Slack Connect guest from another workspace decides nothing.
            _ = try await Self.interact(server, slack.click(SlackInteraction.approveAction, request: id, user: "UGUEST", team: "T0ELSEWHERE"))
            try await Self.eventually("the guest is told") { await slack.responses(for: "UGUEST").contains { $0.contains("own Slack workspace") } }
            #expect(try await Self.state(server, id) == "pending")

            // Frank makes a link code in the web inbox; typed into Slack's link form by the unlinked
            // account, it links that account to frank, once.
            let (cookie, session) = try await server.service.signIns.openWebSession(frank)
            let cookieHeader = [("Cookie", "gatehouse_session=\(cookie)")]
            let page = try await server.send(.GET, "/slack/link", token: nil, headers: cookieHeader)
            #expect(page.status == 200 && String(decoding: page.body, as: UTF8.self).contains("Make a link code"))
            let made = try await server.send(.POST, "/slack/link", token: nil, rawBody: Data("csrf=\(session.csrf)".utf8),
                                             contentType: "application/x-www-form-urlencoded", headers: cookieHeader + [("Origin", server.baseURL)])
            let html = String(decoding: made.body, as: UTF8.self)
            let code = try #require(html.firstMatch(of: /<strong>([A-Z2-9]{4}-[A-Z2-9]{4})<\/strong>/).map { String($0.1) }, "\(made.status) \(html)")
            let noCSRF = try await server.send(.POST, "/slack/link", token: nil, rawBody: Data("csrf=wrong".utf8),
                                               contentType: "application/x-www-form-urlencoded", headers: cookieHeader + [("Origin", server.baseURL)])
            #expect(noCSRF.status == 403, "a code is made only by the signed-in person's own form")
            _ = try await Self.interact(server, slack.click(SlackInteraction.linkAction, request: "", user: "UMALLORY", trigger: "trigger-link"))
            try await Self.eventually("the link form opens") { await slack.calls("views.open").contains { $0.body["trigger_id"] as? String == "trigger-link" } }
            let linkModal = try #require(await slack.calls("views.open").last?.body["view"] as? [String: Any])
            #expect(linkModal["callback_id"] as? String == SlackInteraction.linkModal)
            let wrong = try await Self.interact(server, slack.submit(linkModal, "ABCD-EFGH", user: "UMALLORY"))
            #expect(wrong.json["response_action"] as? String == "errors", "\(wrong.json)")
            let right = try await Self.interact(server, slack.submit(linkModal, code.lowercased(), user: "UMALLORY"))
            #expect(right.json["response_action"] as? String == "clear", "\(right.json)")
            let reused = try await Self.interact(server, slack.submit(linkModal, code, user: "UOTHER"))
            #expect(reused.json["response_action"] as? String == "errors", "a code links once")
            _ = try await Self.interact(server, slack.click(SlackInteraction.approveAction, request: id, user: "UMALLORY"))
            try await Self.eventually("approved by frank") { try await Self.state(server, id) == "approved" }
            let approved = try #require(try await Self.audit(server, "request.approved").first { $0["subject"] as? String == id })
            #expect(approved["actor"] as? String == "frank")
            #expect(try await Self.audit(server, "slack.linked").contains { ($0["details"] as? [String: String])?["via"] == "inbox" })
        }
        await slack.stop()
    }

    /// Deliveries correctly signed (by Slack mistaken, or by anyone who has the signing secret) whose
    /// payloads are mutated clicks and forms: each is answered 200 (read, and refused or ignored), 400
    /// (malformed) or 413 (too large), never an error of the server's, and none decides anything: the
    /// clicking account is linked to nobody.
    @Test("signed deliveries with mutated payloads are answered 200, 400 or 413 and decide nothing")
    func signedHostileDeliveries() async throws {
        let slack = try await SlackStandIn.start()
        await slack.state.add(.init(id: "UOTHER", email: nil, confirmed: false))
        try await TestServer.with(policy: Self.policy(slack), realTime: true, outbox: true) { server in
            let alice = try await Self.signIn(server, "alice")
            let id = try #require(try await server.request(alice.secret).string("id"))
            func payload(_ form: [UInt8]) throws -> [String: Any] {
                let encoded = String(decoding: form.dropFirst("payload=".utf8.count), as: UTF8.self).removingPercentEncoding ?? ""
                return try #require(try JSONSerialization.jsonObject(with: Data(encoded.utf8)) as? [String: Any])
            }
            let clicks = try [SlackInteraction.approveAction, SlackInteraction.denyAction, SlackInteraction.linkAction].map {
                try payload(slack.click($0, request: id, user: "UOTHER"))
            }
            var mutator = PayloadMutator(seed: 4_12_2026)
            var statuses: [Int: Int] = [:]
            for _ in 0..<200 {
                let mutated = mutator.mutate(mutator.pick(clicks)) as? [String: Any] ?? [:]
                let body = mutator.chance(3) ? mutator.mutate(bytes: SlackStandIn.form(mutated)) : SlackStandIn.form(mutated)
                let reply = try await Self.interact(server, body)
                statuses[reply.status, default: 0] += 1
                #expect([200, 400, 413].contains(reply.status), "\(reply.status) \(String(decoding: reply.body, as: UTF8.self)) for \(String(decoding: body.prefix(300), as: UTF8.self))")
                if reply.status == 400 { #expect(reply.string("code") == "slack_payload_invalid") }
            }
            #expect((statuses[200] ?? 0) > 20 && (statuses[400] ?? 0) > 20, "\(statuses)")
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await Self.state(server, id) == "pending")
            let approvals = try await Self.audit(server, "approval.recorded"), denials = try await Self.audit(server, "request.denied")
            #expect(approvals.isEmpty && denials.isEmpty)
            #expect(try await server.send(.GET, "/healthz", token: nil).status == 200)
        }
        await slack.stop()
    }

    @Test("a session's end ends its Slack decisions: a person signed out everywhere is told to sign in, nothing is decided")
    func signedOutPeopleDecideNothing() async throws {
        let slack = try await SlackStandIn.start()
        await slack.state.add(.init(id: "UBOB", email: "bob@example.com", confirmed: true))
        try await TestServer.with(policy: Self.policy(slack), realTime: true, outbox: true) { server in
            let alice = try await Self.signIn(server, "alice")
            let bob = try await Self.signIn(server, "bob")
            let id = try #require(try await server.request(alice.secret).string("id"))
            #expect(try await server.logout(bob.secret).status == 204)
            _ = try await Self.interact(server, slack.click(SlackInteraction.approveAction, request: id, user: "UBOB"))
            try await Self.eventually("bob is told to sign in") { await slack.responses(for: "UBOB").contains { $0.contains("signed in") } }
            #expect(try await Self.state(server, id) == "pending")
        }
        await slack.stop()
    }

    @Test("a link made from an e-mail address ends when Slack's confirmed address changes; nothing is decided")
    func emailLinkFollowsTheAddress() async throws {
        let slack = try await SlackStandIn.start()
        await slack.state.add(.init(id: "UBOB", email: "bob@example.com", confirmed: true))
        try await TestServer.with(policy: Self.policy(slack), realTime: true, outbox: true) { server in
            let alice = try await Self.signIn(server, "alice")
            _ = try await Self.signIn(server, "bob")
            let first = try #require(try await server.request(alice.secret).string("id"))
            _ = try await Self.interact(server, slack.click(SlackInteraction.approveAction, request: first, user: "UBOB"))
            try await Self.eventually("approved") { try await Self.state(server, first) == "approved" }
            // The Slack account now shows someone else's address (confirmed by their workspace admin, say).
            await slack.state.add(.init(id: "UBOB", email: "mallory@example.com", confirmed: true))
            let second = try #require(try await server.request(alice.secret, resource: "prod-host", role: "operate").string("id"))
            _ = try await Self.interact(server, slack.click(SlackInteraction.approveAction, request: second, user: "UBOB"))
            try await Self.eventually("bob's account is told it is not linked") { await slack.responses(for: "UBOB").contains { $0.contains("not linked") } }
            #expect(try await Self.state(server, second) == "pending")
            #expect(try await Self.audit(server, "slack.unlinked").contains { ($0["details"] as? [String: String])?["principal"] == "bob" })
        }
        await slack.stop()
    }

    @Test("Slack unreachable: the message stays in the outbox and is posted once Slack answers again")
    func slackOutageIsRetried() async throws {
        let slack = try await SlackStandIn.start()
        await slack.state.setFailPosts(3)
        try await TestServer.with(policy: Self.policy(slack), realTime: true, outbox: true) { server in
            let alice = try await Self.signIn(server, "alice")
            let id = try #require(try await server.request(alice.secret).string("id"))
            try await Self.eventually("posted after the outage") { await slack.calls("chat.postMessage").contains { $0.text.contains(id) } }
            #expect(await slack.state.failedPosts == 3)
            #expect(await slack.calls("chat.postMessage").filter { $0.text.contains(id) }.count == 1, "posted once")
            // The attempt is recorded just after Slack answered.
            var row: [String: Any] = [:]
            try await Self.eventually("the outbox records the delivery") {
                let outbox = try await server.listDeliveries(TestServer.adminToken, limit: 100)
                row = (outbox.json["deliveries"] as? [[String: Any]] ?? []).first { $0["endpoint"] as? String == "slack:C0GENERAL01" } ?? [:]
                return row["state"] as? String == "delivered"
            }
            #expect(row["attempts"] as? Int == 4, "\(row)")
        }
        await slack.stop()
    }
}
