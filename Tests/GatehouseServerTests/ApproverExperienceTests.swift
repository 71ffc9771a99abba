import AsyncHTTPClient
import Foundation
import GatehouseCore
import NIOCore
import NIOHTTP1
import Testing

/// The test server's policy with break-glass turned on: dba members may take any role of
/// prod-db for at most 15 minutes, once a day; security is told.
let breakGlassPolicy = TestServer.policyYAML + """

    break_glass: {enabled: true, max_duration: 15m, rate: 1/d, requesters: [dba], notify: [security], review_required: true}
    """

@Suite("Break-glass over HTTP")
struct BreakGlassHTTPTests {
    static func use(_ server: TestServer, _ token: String, role: String = "admin", duration: String? = nil,
                    reason: String = "INC-9 primary is down, killing runaway queries") async throws -> TestServer.Reply {
        var body: [String: Any] = ["resource": "prod-db", "role": role, "reason": reason]
        if let duration { body["duration"] = duration }
        return try await server.send(.POST, "/v1/break-glass", token: token, json: body)
    }

    @Test("granted at once, marked, told to security, rate-limited, listed until reviewed by someone else, audited")
    func lifecycle() async throws {
        try await TestServer.with(policy: breakGlassPolicy) { server in
            let t = try await server.tokens("alice", "bob", "erin")
            #expect(try await server.check(t["bob"]!, role: "admin").string("decision") == "approval_required")

            let used = try await Self.use(server, t["bob"]!)
            #expect(used.status == 201, "\(String(decoding: used.body, as: UTF8.self))")
            let grantId = try #require(used.string("grant_id"))
            #expect(used.json["awaiting_review"] as? Bool == true)
            // Usable at once, without anyone approving.
            let check = try await server.check(t["bob"]!, role: "admin")
            #expect(check.string("decision") == "allow")
            #expect(check.string("grant_id") == grantId)
            let grant = try await server.send(.GET, "/v1/grants/\(grantId)", token: t["bob"]!)
            #expect(grant.json["break_glass"] as? Bool == true)
            let expires = try #require(grant.string("expires_at"))
            #expect(expires == server.clock.now().addingTimeInterval(15 * 60).rfc3339)

            // Everyone in `notify` (erin and dave) is told, outside the budget.
            var recipients: [String] = []
            for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
                let told = try await server.send(.GET, "/v1/notifications?recipient=\(name)&limit=100", token: TestServer.adminToken)
                recipients += (told.json["notifications"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "break_glass" }
                    .compactMap { $0["recipient"] as? String }
            }
            #expect(recipients == ["dave", "erin"])

            // The rate: once a day per person.
            let again = try await Self.use(server, t["bob"]!)
            #expect(again.status == 429)
            #expect(again.string("code") == "break_glass_rate")
            #expect(again.headers.first(name: "Retry-After") != nil)

            // Listed until reviewed; the holder cannot review it; a non-reviewer does not even see it.
            let awaiting = try await server.send(.GET, "/v1/break-glass?awaiting_review=true", token: t["erin"]!)
            #expect((awaiting.json["uses"] as? [[String: Any]])?.map { $0["grant_id"] as? String } == [grantId])
            let others = try await server.send(.GET, "/v1/break-glass", token: t["alice"]!)
            #expect((others.json["uses"] as? [Any])?.isEmpty == true)
            let own = try await server.send(.POST, "/v1/break-glass/\(grantId)/review", token: t["bob"]!, json: ["comment": "all fine"])
            let outsider = try await server.send(.POST, "/v1/break-glass/\(grantId)/review", token: t["alice"]!, json: ["comment": "fine by me"])
            #expect(outsider.status == 404)
            #expect(own.status == 403)
            #expect(own.string("code") == "self_review")
            let empty = try await server.send(.POST, "/v1/break-glass/\(grantId)/review", token: t["erin"]!, json: ["comment": " "])
            #expect(empty.status == 400)
            let reviewed = try await server.send(.POST, "/v1/break-glass/\(grantId)/review", token: t["erin"]!,
                                                 json: ["comment": "killed 3 queries, justified"])
            #expect(reviewed.status == 200)
            #expect(reviewed.string("reviewed_by") == "erin")
            let twice = try await server.send(.POST, "/v1/break-glass/\(grantId)/review", token: TestServer.adminToken, json: ["comment": "again"])
            #expect(twice.status == 409)
            let none = try await server.send(.GET, "/v1/break-glass?awaiting_review=true", token: t["erin"]!)
            #expect((none.json["uses"] as? [Any])?.isEmpty == true)

            let audit = try await server.send(.GET, "/v1/audit?limit=1000", token: TestServer.adminToken)
            let actions = (audit.json["events"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            for action in ["break_glass.used", "grant.started", "break_glass.refused", "break_glass.reviewed"] {
                #expect(actions.contains(action), "\(actions)")
            }
            #expect(try await server.send(.GET, "/v1/audit/verify", token: TestServer.adminToken).json["ok"] as? Bool == true)
        }
    }

    @Test("refused for those the policy does not allow, beyond the maximum duration, and when disabled")
    func refusals() async throws {
        try await TestServer.with(policy: breakGlassPolicy) { server in
            let t = try await server.tokens("alice", "bob", "carol", "deploy-bot")
            // alice may request admin but is not in dba; carol is in dba but may not request admin:
            // break_glass.requesters narrows the role's requesters, never widens them.
            for name in ["alice", "carol", "deploy-bot"] {
                let refused = try await Self.use(server, t[name]!)
                #expect(refused.status == 403, "\(name)")
                #expect(refused.string("code") == "not_allowed_break_glass", "\(name)")
            }
            let long = try await Self.use(server, t["bob"]!, duration: "1h")
            #expect(long.status == 400)
            #expect(long.string("field") == "duration")
            // A refusal for bad input does not spend the day's use.
            #expect(try await Self.use(server, t["bob"]!).status == 201)
            #expect(try await server.send(.GET, "/v1/grants?scope=all&limit=100", token: TestServer.adminToken)
                .json["grants"].map { ($0 as? [Any])?.count } == 1)
        }
        try await TestServer.with { server in
            let t = try await server.tokens("bob")
            let disabled = try await Self.use(server, t["bob"]!)
            #expect(disabled.status == 403)
            #expect(disabled.string("code") == "break_glass_disabled")
        }
    }

    @Test("under concurrency the rate still allows exactly one use")
    func concurrentUses() async throws {
        try await TestServer.with(policy: breakGlassPolicy) { server in
            let token = try await server.token(for: "bob")
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<12 { group.addTask { try await Self.use(server, token).status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 201 }.count == 1, "\(statuses)")
            #expect(statuses.filter { $0 == 429 }.count == 11, "\(statuses)")
            let grants = try await server.send(.GET, "/v1/grants?scope=all&limit=100", token: TestServer.adminToken)
            #expect((grants.json["grants"] as? [Any])?.count == 1)
        }
    }
}

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

    @Test("a poll on a decided request answers at once; a pending one answers pending at its deadline")
    func deadlines() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let pending = try await server.send(.GET, "/v1/requests/\(id)?wait=1s", token: t["alice"]!)
            #expect(pending.status == 200)
            #expect(pending.string("state") == "pending")
            _ = try await server.send(.POST, "/v1/requests/\(id)/deny", token: t["bob"]!, json: ["comment": "no"])
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

/// A browser's view of the inbox over plain HTTP: cookies by hand, redirects not followed.
struct Browser {
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    let baseURL: String
    var cookies: [String: String] = [:]

    struct Page {
        var status: Int
        var headers: HTTPHeaders
        var html: String
        var location: String? { headers.first(name: "Location") }
        /// The value of the first hidden `csrf` field.
        var csrf: String? {
            guard let range = html.range(of: #"name="csrf" value=""#) else { return nil }
            return String(html[range.upperBound...].prefix { $0 != "\"" })
        }
    }

    mutating func get(_ path: String) async throws -> Page {
        try await send(.GET, path, form: nil)
    }

    mutating func post(_ path: String, _ form: [(String, String)], headers: [(String, String)] = []) async throws -> Page {
        try await send(.POST, path, form: form, headers: headers)
    }

    mutating func send(_ method: HTTPMethod, _ path: String, form: [(String, String)]?, headers: [(String, String)] = []) async throws -> Page {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if !cookies.isEmpty { request.headers.add(name: "Cookie", value: cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")) }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let form {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            let body = form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await Self.client.execute(request, timeout: .seconds(30))
        for header in response.headers["Set-Cookie"] {
            let pair = header.split(separator: ";")[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2 else { continue }
            if pair[1].isEmpty || header.contains("Max-Age=0") { cookies[String(pair[0])] = nil } else { cookies[String(pair[0])] = String(pair[1]) }
        }
        let body = try await response.body.collect(upTo: 4 * 1024 * 1024)
        return Page(status: Int(response.status.code), headers: response.headers, html: String(buffer: body))
    }

    /// Signs in through the form, as a browser would.
    mutating func signIn(_ token: String) async throws -> Page {
        let form = try await get("/sign-in")
        return try await post("/sign-in", [("csrf", form.csrf ?? ""), ("token", token)])
    }
}

@Suite("Web inbox over HTTP")
struct WebInboxHTTPTests {
    @Test("sign-in gives an HttpOnly SameSite session cookie; pages carry a CSP; a bad token is refused")
    func signIn() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("bob")
            var browser = Browser(baseURL: server.baseURL)
            let anonymous = try await browser.get("/inbox")
            #expect(anonymous.status == 303)
            #expect(anonymous.location == "/sign-in")
            let form = try await browser.get("/sign-in")
            #expect(form.headers.first(name: "Content-Security-Policy")?.contains("default-src 'none'") == true)
            let wrong = try await browser.post("/sign-in", [("csrf", form.csrf ?? ""), ("token", "ghs_not-a-token")])
            #expect(wrong.status == 401)
            #expect(wrong.html.contains("sign-in failed"))
            #expect(browser.cookies["gatehouse_session"] == nil)

            var other = Browser(baseURL: server.baseURL)
            let signedIn = try await other.signIn(t["bob"]!)
            #expect(signedIn.status == 303)
            #expect(signedIn.location == "/inbox")
            let setCookie = try #require(signedIn.headers["Set-Cookie"].first { $0.hasPrefix("gatehouse_session=") })
            #expect(setCookie.contains("HttpOnly"))
            #expect(setCookie.contains("SameSite=Lax"))
            #expect(!setCookie.contains("Secure"))
            let inbox = try await other.get("/inbox")
            #expect(inbox.status == 200)
            #expect(inbox.html.contains("<span class=\"who\">bob</span>"))
            #expect(inbox.headers.first(name: "Cache-Control") == "no-store")

            // Behind a TLS-ending proxy the cookie is Secure.
            var secure = Browser(baseURL: server.baseURL)
            let page = try await secure.get("/sign-in")
            let tls = try await secure.post("/sign-in", [("csrf", page.csrf ?? ""), ("token", t["bob"]!)], headers: [("X-Forwarded-Proto", "https")])
            #expect(tls.headers["Set-Cookie"].first { $0.hasPrefix("gatehouse_session=") }?.contains("; Secure") == true)
        }
    }

    @Test("a sign-in form without its double-submit token, or from another site, is refused")
    func signInCSRF() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("bob")
            var browser = Browser(baseURL: server.baseURL)
            _ = try await browser.get("/sign-in")
            let forged = try await browser.post("/sign-in", [("csrf", "si_guess"), ("token", t["bob"]!)])
            #expect(forged.status == 403)
            let page = try await browser.get("/sign-in")
            let crossSite = try await browser.post("/sign-in", [("csrf", page.csrf ?? ""), ("token", t["bob"]!)], headers: [("Origin", "https://evil.example")])
            #expect(crossSite.status == 403)
            #expect(browser.cookies["gatehouse_session"] == nil)
        }
    }

    @Test("approve and deny through the forms; a form without the CSRF token or from another origin changes nothing")
    func decideWithCSRF() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            var bob = Browser(baseURL: server.baseURL)
            _ = try await bob.signIn(t["bob"]!)
            let inbox = try await bob.get("/inbox")
            #expect(inbox.html.contains("/requests/\(id)"))
            let page = try await bob.get("/requests/\(id)")
            let csrf = try #require(page.csrf)
            #expect(!csrf.isEmpty)

            let missing = try await bob.post("/requests/\(id)/decide", [("decision", "approve")])
            #expect(missing.status == 403)
            let wrong = try await bob.post("/requests/\(id)/decide", [("decision", "approve"), ("csrf", "csrf_wrong")])
            #expect(wrong.status == 403)
            let crossOrigin = try await bob.post("/requests/\(id)/decide", [("decision", "approve"), ("csrf", csrf)],
                                                 headers: [("Origin", "http://evil.example")])
            #expect(crossOrigin.status == 403)
            let crossSite = try await bob.post("/requests/\(id)/decide", [("decision", "approve"), ("csrf", csrf)],
                                               headers: [("Sec-Fetch-Site", "cross-site")])
            #expect(crossSite.status == 403)
            #expect(try await server.send(.GET, "/v1/requests/\(id)", token: t["bob"]!).string("state") == "pending")

            // Another session's token does not work either.
            var alice = Browser(baseURL: server.baseURL)
            _ = try await alice.signIn(t["alice"]!)
            let aliceCSRF = try #require(try await alice.get("/mine").csrf)
            #expect(try await bob.post("/requests/\(id)/decide", [("decision", "approve"), ("csrf", aliceCSRF)]).status == 403)

            let approved = try await bob.post("/requests/\(id)/decide", [("decision", "approve"), ("csrf", csrf), ("comment", "ok")],
                                              headers: [("Origin", server.baseURL)])
            #expect(approved.status == 303)
            #expect(approved.location == "/requests/\(id)?done=approved")
            #expect(try await server.send(.GET, "/v1/requests/\(id)", token: t["bob"]!).string("state") == "approved")
            let shown = try await bob.get(approved.location!)
            #expect(shown.html.contains("Approved: the grant is active now."))
            // Decided once: the form is gone and a replay is refused.
            #expect(!shown.html.contains("value=\"approve\""))
            #expect(try await bob.post("/requests/\(id)/decide", [("decision", "approve"), ("csrf", csrf)]).status == 409)
            let grants = try await alice.get("/grants")
            #expect(grants.html.contains("prod-db/write"))

            // Deny needs a comment, which the requester then sees.
            let second = try #require(try await server.request(t["alice"]!, role: "admin").string("id"))
            let noComment = try await bob.post("/requests/\(second)/decide", [("decision", "deny"), ("csrf", csrf)])
            #expect(noComment.status == 400)
            let denied = try await bob.post("/requests/\(second)/decide", [("decision", "deny"), ("csrf", csrf), ("comment", "use the read role")])
            #expect(denied.status == 303)
            let seen = try await alice.get("/requests/\(second)")
            #expect(seen.html.contains("use the read role"))
            #expect(seen.html.contains("state denied"))
        }
    }

    @Test("nobody approves their own request through the web either")
    func selfApproval() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("bob")
            let id = try #require(try await server.request(t["bob"]!).string("id"))
            var bob = Browser(baseURL: server.baseURL)
            _ = try await bob.signIn(t["bob"]!)
            let page = try await bob.get("/requests/\(id)")
            #expect(!page.html.contains("value=\"approve\""))
            let forced = try await bob.post("/requests/\(id)/decide", [("decision", "approve"), ("csrf", page.csrf ?? "")])
            #expect(forced.status == 403)
            #expect(try await server.send(.GET, "/v1/requests/\(id)", token: t["bob"]!).string("state") == "pending")
        }
    }

    @Test("HTML and script in reasons, comments and filters are escaped on every page")
    func escaping() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let evil = "INC-7 <script>alert('x')</script><img src=x onerror=alert(1)> \"quoted\" & " + String(repeating: "W", count: 3000)
            let id = try #require(try await server.request(t["alice"]!, reason: evil).string("id"))
            _ = try await server.send(.POST, "/v1/requests/\(id)/deny", token: t["bob"]!, json: ["comment": "<b onmouseover=x>no</b>"])
            var admin = Browser(baseURL: server.baseURL)
            _ = try await admin.signIn(TestServer.adminToken)
            var bob = Browser(baseURL: server.baseURL)
            _ = try await bob.signIn(t["bob"]!)
            let pages = [try await bob.get("/requests/\(id)"),
                         try await admin.get("/audit?who=%3Cscript%3E&resource=%22%3E%3Cimg"),
                         try await admin.get("/audit"), try await admin.get("/requests/\(id)")]
            for page in pages {
                #expect(page.status == 200)
                #expect(!page.html.contains("<script"), "\(page.html.prefix(400))")
                #expect(!page.html.contains("<img"))
                #expect(!page.html.contains("<b onmouseover"))
            }
            #expect(pages[0].html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"))
            #expect(pages[0].html.contains("&lt;b onmouseover=x&gt;no&lt;/b&gt;"))
            #expect(pages[1].html.contains("value=\"&lt;script&gt;\""))
        }
    }

    @Test("the audit page is for admins and shows the chain's verification; grants can be revoked by admins")
    func auditAndRevoke() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            let grantId = try #require(try await server.approve(t["bob"]!, id).string("grant_id"))
            var bob = Browser(baseURL: server.baseURL)
            _ = try await bob.signIn(t["bob"]!)
            #expect(try await bob.get("/audit").status == 403)
            var admin = Browser(baseURL: server.baseURL)
            _ = try await admin.signIn(TestServer.adminToken)
            let audit = try await admin.get("/audit?action=request")
            #expect(audit.html.contains("Chain verified"))
            #expect(audit.html.contains("request.approved"))
            #expect(!audit.html.contains("grant.started"))
            #expect(try await admin.get("/audit?since=yesterday").status == 400)
            let grants = try await admin.get("/grants")
            #expect(grants.html.contains("/grants/\(grantId)/revoke"))
            let csrf = try #require(grants.csrf)
            #expect(try await admin.post("/grants/\(grantId)/revoke", [("csrf", csrf), ("reason", "")]).status == 400)
            let revoked = try await admin.post("/grants/\(grantId)/revoke", [("csrf", csrf), ("reason", "done for today")])
            #expect(revoked.status == 303)
            #expect(try await server.check(t["alice"]!).string("decision") == "approval_required")
        }
    }

    @Test("sign-out and token revocation end the session; unknown ids are 404 pages, never 500")
    func sessionEnds() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("bob", "carol")
            var bob = Browser(baseURL: server.baseURL)
            _ = try await bob.signIn(t["bob"]!)
            for path in ["/requests/req_doesnotexist", "/requests/%3Cx%3E", "/requests/" + String(repeating: "a", count: 200)] {
                let page = try await bob.get(path)
                #expect(page.status == 404, "\(path)")
                #expect(page.headers.first(name: "Content-Type")?.hasPrefix("text/html") == true)
            }
            let junk = try await bob.send(.POST, "/grants/grt_x/release", form: [("csrf", "\u{0}\u{FFFF}"), ("%%%", "%zz")])
            #expect(junk.status == 403)
            let inbox = try await bob.get("/inbox")
            let signOut = try await bob.post("/sign-out", [("csrf", inbox.csrf ?? "")])
            #expect(signOut.status == 303)
            #expect(try await bob.get("/inbox").location == "/sign-in")

            var carol = Browser(baseURL: server.baseURL)
            _ = try await carol.signIn(t["carol"]!)
            let saved = carol.cookies
            #expect(try await carol.get("/inbox").status == 200)
            let tokens = try await server.send(.GET, "/v1/tokens", token: TestServer.adminToken)
            let carolToken = try #require((tokens.json["tokens"] as? [[String: Any]])?.first { $0["principal"] as? String == "carol" }?["id"] as? String)
            #expect(try await server.send(.POST, "/v1/tokens/\(carolToken)/revoke", token: TestServer.adminToken).status == 200)
            carol.cookies = saved
            #expect(try await carol.get("/inbox").location == "/sign-in")
        }
    }
}

@Suite("Webhook outbox: approver budgets and digests")
struct WebhookBudgetTests {
    @Test("a request is announced to the approvers within their budget; the others get it in one digest after the interval")
    func budgetAndDigest() async throws {
        let policy = TestServer.policyYAML.replacingOccurrences(
            of: "antispam: {enabled: false}",
            with: "antispam: {approver_notifications: {rate: 1/h, burst: 1}, blocked_delay: off}") + """

            notifications:
              base_url: https://gatehouse.example.com
              digest_interval: 10m
              webhooks:
                chat: {url: "http://127.0.0.1:9/hook", format: slack, events: [request.created, digest]}
            """
        try await TestServer.with(policy: policy) { server in
            let t = try await server.tokens("alice")
            // Start following the log (the first pass only notes where it begins).
            try await server.service.outbox.queueMessages()
            // write: approvers bob, carol, dave, frank (dba), each told at once: their budget is now spent.
            let first = try #require(try await server.request(t["alice"]!, role: "write").string("id"))
            // admin: the same four (over budget: digest) and erin (security, still within budget).
            let second = try #require(try await server.request(t["alice"]!, role: "admin", reason: "INC-4411 rebuild the broken index").string("id"))
            try await server.service.outbox.queueMessages()
            var deliveries = try await server.send(.GET, "/v1/webhooks/deliveries?limit=100", token: TestServer.adminToken)
                .json["deliveries"] as? [[String: Any]] ?? []
            #expect(deliveries.count == 2, "\(deliveries)")
            #expect(deliveries.allSatisfy { $0["event"] as? String == "request.created" })

            let bodies = try await server.service.store.read { session in
                try await session.deliveries(limit: 100).map(\.body)
            }
            let firstBody = try #require(bodies.first { $0.contains(first) })
            let secondBody = try #require(bodies.first { $0.contains(second) })
            #expect(firstBody.contains("https://gatehouse.example.com/requests/\(first)"))
            #expect(secondBody.contains("https://gatehouse.example.com/requests/\(second)"))

            // Nothing is sent as a digest before the interval...
            #expect(try await server.service.outbox.flushDigests() == 0)
            server.clock.advance(by: 601)
            // ...then one digest per approver who was over budget, naming the request.
            #expect(try await server.service.outbox.flushDigests() == 4)
            #expect(try await server.service.outbox.flushDigests() == 0)
            try await server.service.outbox.queueMessages()
            deliveries = try await server.send(.GET, "/v1/webhooks/deliveries?limit=100", token: TestServer.adminToken)
                .json["deliveries"] as? [[String: Any]] ?? []
            #expect(deliveries.filter { $0["event"] as? String == "digest" }.count == 4)
            let audit = try await server.send(.GET, "/v1/audit?limit=1000", token: TestServer.adminToken)
            let digests = (audit.json["events"] as? [[String: Any]] ?? []).filter { $0["action"] as? String == "notification.digest" }
            let recipients = digests.compactMap { ($0["details"] as? [String: String])?["recipient"] }.sorted()
            #expect(recipients == ["bob", "carol", "dave", "frank"])
            #expect(digests.allSatisfy { ($0["details"] as? [String: String])?["request_ids"] == second })
        }
    }
}

@Suite("Webhook outbox: giving up")
struct WebhookGiveUpTests {
    @Test("after the last attempt, on 410 Gone, or when the endpoint left the policy, a message is given up and audited")
    func givesUp() async throws {
        let policy = TestServer.policyYAML + """

            notifications:
              retry: {initial: 1s, max: 1s, attempts: 2}
              webhooks:
                chat: {url: "http://127.0.0.1:9/hook", format: slack, events: [request.created, request.approved, grant.started]}
            """
        try await TestServer.with(policy: policy) { server in
            let service = server.service
            let t = try await server.tokens("alice", "bob")
            try await service.outbox.queueMessages()
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            _ = try await server.approve(t["bob"]!, id)
            try await service.outbox.queueMessages()
            var due = try await service.outbox.claimDeliveries(lease: 30)
            #expect(due.count == 3)
            // Claimed: nobody else takes them while the attempt runs.
            #expect(try await service.outbox.claimDeliveries(lease: 30).isEmpty)
            let byEvent = Dictionary(uniqueKeysWithValues: due.map { ($0.event, $0) })
            try await service.outbox.recordAttempts([
                .init(delivery: byEvent["request.created"]!, status: 500, error: nil),
                .init(delivery: byEvent["request.approved"]!, status: 410, error: nil),
                .init(delivery: byEvent["grant.started"]!, status: nil, error: "connection refused"),
            ])
            // Not due before the backoff has passed...
            #expect(try await service.outbox.claimDeliveries(lease: 30).isEmpty)
            server.clock.advance(by: 2)
            due = try await service.outbox.claimDeliveries(lease: 30)
            #expect(Set(due.map(\.event)) == ["request.created", "grant.started"])
            try await service.outbox.recordAttempts(due.map { .init(delivery: $0, status: 503, error: nil) })
            server.clock.advance(by: 5)
            #expect(try await service.outbox.claimDeliveries(lease: 30).isEmpty)

            let rows = try await server.send(.GET, "/v1/webhooks/deliveries", token: TestServer.adminToken).json["deliveries"] as? [[String: Any]] ?? []
            #expect(rows.count == 3)
            #expect(rows.allSatisfy { $0["state"] as? String == "failed" }, "\(rows)")
            let audit = try await server.send(.GET, "/v1/audit?limit=1000", token: TestServer.adminToken)
            let failed = (audit.json["events"] as? [[String: Any]] ?? []).filter { $0["action"] as? String == "webhook.failed" }
            #expect(failed.count == 3)
            #expect(try await server.send(.GET, "/v1/webhooks/deliveries", token: t["alice"]!).status == 403)

            // A message for an endpoint that left the policy is given up at its next attempt.
            let second = try #require(try await server.request(t["alice"]!, resource: "prod-host", role: "operate").string("id"))
            try await service.outbox.queueMessages()
            try server.writePolicy(TestServer.policyYAML, reload: true)
            let orphaned = try await service.outbox.claimDeliveries(lease: 30)
            #expect(orphaned.count == 1)
            #expect(orphaned.first?.event == "request.created")
            #expect(orphaned.first?.body.contains("prod-host/operate") == true, "\(second)")
            try await service.outbox.recordAttempts(orphaned.map { .init(delivery: $0, status: nil, error: "not sent") })
            let last = try await server.send(.GET, "/v1/webhooks/deliveries?limit=1", token: TestServer.adminToken).json["deliveries"] as? [[String: Any]]
            #expect(last?.first?["last_status"] as? String == "endpoint no longer in the policy")
        }
    }
}

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
            #expect(try await server.send(.POST, "/v1/requests/\(reported)/report", token: t["bob"]!, json: ["comment": "odd"]).status == 200)
            #expect(try await server.send(.GET, "/v1/requests/\(held)", token: TestServer.adminToken).string("state") == "quarantined")

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
            #expect(try await server.send(.GET, "/v1/requests/\(held)", token: TestServer.adminToken).string("state") == "pending")
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
