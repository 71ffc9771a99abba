import Foundation
import GatehouseCore
import GatehouseStore
import GatehouseTestSupport
import Logging
import Testing

/// People sign in through a real OpenID Connect provider (django-oauth-toolkit), on the web and
/// from the CLI's API; groups come from the provider; tokens for people do not exist.
/// One test at a time: each starts its own provider (a Django process), and the rest of the suite
/// runs beside them on two cores.
@Suite("Sign-in through an OpenID Connect provider", .serialized)
struct ProviderSignInTests {
    static let resources = """
        version: 1
        principals:
          deploy-bot: {groups: [automation], kind: service}
          alice: {groups: [engineers]}
          lena: {groups: [leads]}
        admins: [security]
        resources:
          prod-db:
            kind: postgres
            roles:
              read:  {requesters: [engineers], approvals: 0, max_duration: 1h, allows: read}
              write: {requesters: [engineers], approvers: [leads], approvals: 1, max_duration: 1h, allows: write}
        antispam: {enabled: false}

        """

    /// A server on the real clock (ID tokens carry real times), switched to the provider.
    static func withSignIn<T>(identityExtra: String = "", oidcExtra: String = "", _ body: (TestServer, TestProvider) async throws -> T) async throws -> T {
        try await TestProvider.with { provider in
            try await TestServer.with(realTime: true) { server in
                try server.writePolicy(resources + provider.identityYAML(baseURL: server.baseURL, extra: identityExtra, oidcExtra: oidcExtra), reload: true)
                #expect(server.service.policies.policy.identity.oidc != nil)
                return try await body(server, provider)
            }
        }
    }

    /// The browser signs in on the web: to the provider, its login page, back to the callback.
    static func webSignIn(_ server: TestServer, _ provider: TestProvider, as person: String) async throws -> (Browser, Browser.Page) {
        var browser = Browser(baseURL: server.baseURL)
        let start = try await browser.get("/auth/sign-in")
        #expect(start.status == 303)
        let location = try #require(start.location)
        #expect(location.hasPrefix(provider.issuer + "/authorize/"))
        for parameter in ["code_challenge_method=S256", "code_challenge=", "state=", "nonce=", "response_type=code"] {
            #expect(location.contains(parameter), "the authorization request lacks \(parameter)")
        }
        let visit = try await provider.browse(location, as: person, stopAt: server.baseURL + "/auth/callback")
        let callback = try #require(visit.stoppedAt, "the provider did not send the browser back: \(visit.body ?? "")")
        let done = try await browser.get(String(callback.dropFirst(server.baseURL.count)))
        return (browser, done)
    }

    /// A person's terminal for the CLI: a config folder of its own (the caller removes it), no token in the
    /// environment, the test server's address.
    static func terminal(_ server: TestServer) -> (config: String, environment: [String: String]) {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-config-\(UUID().uuidString)").path
        return (config, ["XDG_CONFIG_HOME": config, "GATEHOUSE_TOKEN": "", "GATEHOUSE_URL": server.baseURL])
    }

    /// How many of the sessions a `listSessions` answer lists are `principal`'s.
    static func sessions(of principal: String, in list: TestServer.Reply) -> Int {
        (list.json["sessions"] as? [[String: Any]] ?? []).filter { $0["principal"] as? String == principal }.count
    }

    /// What `gatehouse login` does over the API: start, the person at the provider, finish.
    static func apiSignIn(_ server: TestServer, _ provider: TestProvider, as person: String) async throws -> TestServer.Reply {
        let port = try TestPorts.free()
        let redirect = "http://127.0.0.1:\(port)/callback"
        let started = try await server.send(.POST, "/v1/auth/login", token: nil, json: ["redirect_uri": redirect])
        #expect(started.status == 201)
        let url = try #require(started.string("authorization_url"))
        let visit = try await provider.browse(url, as: person, stopAt: redirect)
        let answer = try #require(visit.stoppedAt.flatMap { URLComponents(string: $0) }, "no redirect back: \(visit.body ?? "")")
        let query = Dictionary(uniqueKeysWithValues: (answer.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(query["state"] == started.string("state"))
        return try await server.send(.POST, "/v1/auth/login/complete", token: nil, json: [
            "state": query["state"] ?? "", "code": query["code"] ?? "", "login_secret": started.string("login_secret") ?? ""])
    }

    static func auditEvents(_ server: TestServer, action: String) async throws -> [[String: Any]] {
        let events = try await server.listAudit(TestServer.adminToken, limit: 1000).json["events"] as? [[String: Any]] ?? []
        return events.filter { $0["action"] as? String == action }
    }

    @Test("a person signs in on the web through the provider's login page, lands in the inbox, and the sign-in is audited with issuer and subject")
    func webSignIn() async throws {
        try await Self.withSignIn { server, provider in
            let sub = try await provider.person("erin", groups: ["oncall"])
            let (browser, done) = try await Self.webSignIn(server, provider, as: "erin")
            #expect(done.status == 303 && done.location == "/inbox")
            #expect(browser.cookies[WebInboxNames.session] != nil)
            #expect(browser.cookies[WebInboxNames.provider] == nil, "the sign-in's state cookie is cleared")
            var signedIn = browser
            let inbox = try await signedIn.get("/inbox")
            #expect(inbox.status == 200)
            #expect(inbox.html.contains(#"<span class="who">erin</span>"#))
            let events = try await Self.auditEvents(server, action: "identity.signed_in")
            let details = try #require(events.first?["details"] as? [String: String])
            #expect(details["issuer"] == provider.issuer)
            #expect(sub.hasSuffix("(sub \(details["subject"] ?? "?"))"))
            #expect(details["groups"] == "engineers")

            // The store with the session moves whole: its session matches its sign-in event. The same export with the
            // session's provider groups edited (a group that makes admins added) is refused, nothing written.
            let lines = Shared([String]())
            _ = try await StoreTransfer.export(server.service.store) { line in lines.with { $0.append(line) } }
            let exported = lines.with { $0 }
            let sessionLine = try #require(exported.firstIndex { $0.contains("\"table\":\"tokens\"") && $0.contains("\"kind\":\"session\"") })
            var edited = exported
            edited[sessionLine] = edited[sessionLine].replacingOccurrences(of: "[\\\"oncall\\\"]", with: "[\\\"oncall\\\",\\\"security\\\"]")
            #expect(edited[sessionLine] != exported[sessionLine], "\(exported[sessionLine])")
            for (lines, refused) in [(edited, true), (exported, false)] {
                let folder = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID().uuidString)")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(at: folder) }
                let target = try await TestDatabase.fresh(.sqlite, folder: folder)
                let store = try await target.open(logger: Logger(label: "transfer-test"))
                do {
                    _ = try await StoreTransfer.import(store, lines: lines)
                    #expect(!refused, "an export with a session's groups edited was imported")
                } catch let error as GatehouseError {
                    #expect(refused && error.code == "import_state_unaudited" && error.message.contains("with groups"), "\(error.message)")
                }
                await store.close()
                await target.drop()
            }
        }
    }

    @Test("one address may start 240 sign-ins at once (more as time passes, two a second), then gets 429 with Retry-After (the page and the API); a sign-in it started before stays usable")
    func signInStartsPerAddress() async throws {
        try await Self.withSignIn { server, provider in
            var browser = Browser(baseURL: server.baseURL)
            // Started until one is refused: at least the 240 at once, and no more than two a second besides.
            let began = Date()
            var started = 0, last: Browser.Page?, refused: Browser.Page?
            while refused == nil, started < 2_000 {
                let start = try await browser.get("/auth/sign-in")
                if start.status == 303 { started += 1; last = start } else { refused = start }
            }
            let allowed = 240 + Int(Date().timeIntervalSince(began) * 2) + 1
            #expect(started >= 240 && started <= allowed, "\(started) started, at most \(allowed) allowed")
            #expect(refused?.status == 429 && refused?.html.contains("too many sign-ins were started from 127.0.0.1") == true, "\(refused?.status ?? 0)")
            var api: TestServer.Reply?
            for _ in 0..<20 {
                let reply = try await server.send(.POST, "/v1/auth/login", token: nil, json: ["redirect_uri": "http://127.0.0.1:53682/callback"])
                if reply.status != 201 { api = reply; break }
            }
            #expect(api?.status == 429 && api?.string("code") == "too_many_requests", "\(api?.status ?? 0)")
            #expect(api?.headers.first(name: "retry-after") == "1", "\(String(describing: api?.headers))")
            // The last sign-in started before the limit still finishes in its browser.
            try await provider.person("erin", groups: ["oncall"])
            let visit = try await provider.browse(try #require(last?.location), as: "erin", stopAt: server.baseURL + "/auth/callback")
            let callback = try #require(visit.stoppedAt, "the provider did not send the browser back: \(visit.body ?? "")")
            let done = try await browser.get(String(callback.dropFirst(server.baseURL.count)))
            #expect(done.status == 303 && done.location == "/inbox", "\(done.status) \(done.html.prefix(200))")
        }
    }

    @Test("the CLI's sign-in gives a session token that files a request; logout ends it; the login secret is needed to finish")
    func apiSignIn() async throws {
        try await Self.withSignIn { server, provider in
            try await provider.person("erin", groups: ["oncall"])
            let session = try await Self.apiSignIn(server, provider, as: "erin")
            #expect(session.status == 201)
            #expect(session.string("principal") == "erin")
            let token = try #require(session.string("token"))
            let me = try await server.whoami(token)
            #expect(me.string("credential") == "session")
            #expect(me.string("expires_at") != nil)
            #expect(try await server.request(token, role: "read", reason: "INC-7 look at checkout errors").status == 201)
            #expect(try await server.logout(token).status == 204)
            #expect(try await server.whoami(token).status == 401)

            // Someone who sees the redirect (code and state) but not the login secret cannot finish.
            let port = try TestPorts.free()
            let started = try await server.send(.POST, "/v1/auth/login", token: nil, json: ["redirect_uri": "http://127.0.0.1:\(port)/callback"])
            let visit = try await provider.browse(started.string("authorization_url") ?? "", as: "erin", stopAt: "http://127.0.0.1:\(port)/callback")
            let query = Dictionary(uniqueKeysWithValues: (URLComponents(string: visit.stoppedAt ?? "")?.queryItems ?? []).map { ($0.name, $0.value ?? "") })
            let stolen = try await server.send(.POST, "/v1/auth/login/complete", token: nil, json: [
                "state": query["state"] ?? "", "code": query["code"] ?? "", "login_secret": "ghl_guessed"])
            #expect(stolen.status == 401)
            #expect(stolen.string("detail")?.contains("another terminal") == true)
            // The device grant is off unless the policy turns it on (a device code can be phished).
            let device = try await server.send(.POST, "/v1/auth/device", token: nil)
            #expect(device.status == 403)
            #expect(device.string("code") == "device_flow_disabled")
            // A redirect that is not a loopback listener is refused before anything is stored.
            let remote = try await server.send(.POST, "/v1/auth/login", token: nil, json: ["redirect_uri": "https://evil.example/callback"])
            #expect(remote.status == 400)
            #expect(remote.string("field") == "redirect_uri")
        }
    }

    @Test("a terminal without a browser signs in with the device grant: `gatehouse login --device` shows a code, the person enters it at the provider, the stored session files a request")
    func deviceSignIn() async throws {
        try await Self.withSignIn(oidcExtra: "    device_flow: enabled") { server, provider in
            try await provider.person("erin", groups: ["oncall"])
            let (config, environment) = Self.terminal(server)
            defer { try? FileManager.default.removeItem(atPath: config) }
            let binary = try ServeProcess.binary().path
            let running = try Command.start(binary, ["login", "--device", "--timeout", "2m"], environment: environment)
            var code = "", uri = ""
            let shown = await waitUntil(timeout: .seconds(30)) {
                let words = running.output.split(whereSeparator: \.isWhitespace).map(String.init)
                guard let at = words.firstIndex(of: "code"), at + 1 < words.count, let address = words.first(where: { $0.hasPrefix(provider.issuer) }) else { return false }
                (code, uri) = (words[at + 1], address)
                return true
            }
            #expect(shown, "gatehouse login --device showed no code: \(running.output)")
            let visit = try await provider.browse(uri, as: "erin", deviceCode: code)
            #expect(visit.accepted == true, "\(visit.body ?? "")")
            let result = await Command.finish(running)
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("signed in as erin"))
            let attributes = try FileManager.default.attributesOfItem(atPath: config + "/gatehouse/session.json")
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            let filed = try await Command.run(binary, ["request", "prod-db", "--role", "read", "--for", "10m", "--reason", "INC-12 checkout errors",
                                                       "--output", "json"], environment: environment)
            #expect(filed.status == 0 && filed.stdout.contains("\"approved\""), "\(filed)")
            let whoami = try await Command.run(binary, ["whoami"], environment: environment)
            #expect(whoami.stdout.contains("sign-in session") && whoami.stdout.contains("session ends"), "\(whoami)")
            // A poll with a made-up secret finds nothing.
            let unknown = try await server.send(.POST, "/v1/auth/device/poll", token: nil, json: ["device_secret": "ghd_guessed"])
            #expect(unknown.status == 401)
        }
    }

    @Test("`gatehouse login --no-browser` finishes through its loopback listener while other local processes hold connections to it, silent or trickling a byte at a time")
    func loopbackLoginWithTrickler() async throws {
        try await Self.withSignIn { server, provider in
            try await provider.person("erin", groups: ["oncall"])
            let (config, environment) = Self.terminal(server)
            defer { try? FileManager.default.removeItem(atPath: config) }
            let running = try Command.start(try ServeProcess.binary().path, ["login", "--no-browser", "--timeout", "2m"], environment: environment)
            var address = ""
            let shown = await waitUntil(timeout: .seconds(30)) {
                guard let url = running.output.split(whereSeparator: \.isWhitespace).map(String.init).first(where: { $0.hasPrefix(provider.issuer) }) else { return false }
                address = url
                return true
            }
            #expect(shown, "gatehouse login showed no address: \(running.output)")
            let redirect = try #require(URLComponents(string: address)?.queryItems?.first { $0.name == "redirect_uri" }?.value)
            let port = try #require(URLComponents(string: redirect)?.port)
            // Another local process connects first and sends nothing at all, then one that sends a byte every 2 s,
            // for up to 80 s.
            let silent = try #require(TestPorts.connected(port))
            defer { close(silent) }
            let trickler = Task.detached { () -> Int in
                guard let fd = TestPorts.connected(port) else { return -1 }
                defer { close(fd) }
                var sent = 0
                for byte in Array("GET /callback?state=".utf8) + Array(repeating: UInt8(ascii: "a"), count: 20) {
                    var one = byte
                    guard send(fd, &one, 1, Int32(MSG_NOSIGNAL)) == 1 else { break }
                    sent += 1
                    try? await Task.sleep(for: .seconds(2))
                }
                return sent
            }
            let visit = try await provider.browse(address, as: "erin", stopAt: redirect)
            let back = try #require(visit.stoppedAt)
            // The provider's redirect reaches the listener (as the person's browser would follow it), answered while
            // the trickler still has most of its 80 s to go: each request head was cut off after 5 s.
            let (reply, _) = try await TestPorts.exchange(port: port, Array("GET \(back.dropFirst(redirect.count - "/callback".count)) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8), timeout: 30)
            #expect(String(decoding: reply, as: UTF8.self).hasPrefix("HTTP/1.1 200"), "\(String(decoding: reply, as: UTF8.self))")
            let result = await Command.finish(running)
            #expect(result.status == 0 && result.stdout.contains("signed in as erin"), "\(result)")
            trickler.cancel()
        }
    }

    @Test("groups come from the provider at each sign-in: added to the approver group, a person approves after signing in again; removed, they cannot once that session ended")
    func groupsFollowTheProvider() async throws {
        try await Self.withSignIn { server, provider in
            try await provider.person("erin", groups: ["oncall"])
            try await provider.person("gus", groups: ["oncall"])
            let erin = try #require(try await Self.apiSignIn(server, provider, as: "erin").string("token"))
            let filed = try await server.request(erin, role: "write", reason: "INC-8 repair the stuck order rows")
            let id = try #require(filed.string("id"))
            let gusBefore = try #require(try await Self.apiSignIn(server, provider, as: "gus").string("token"))
            #expect(try await server.approve(gusBefore, id).status == 404, "gus is not an approver yet (nor can he see the request)")

            try await provider.person("gus", groups: ["oncall", "db-leads"])
            #expect(try await server.approve(gusBefore, id).status == 404, "groups change at the next sign-in, not before")
            let gus = try #require(try await Self.apiSignIn(server, provider, as: "gus").string("token"))
            let approved = try await server.approve(gus, id)
            #expect(approved.status == 200)
            #expect(approved.string("state") == "approved")

            // Removed from the group at the provider: once the session ends, the next one has no approver rights.
            try await provider.person("gus", groups: ["oncall"])
            #expect(try await server.logout(gus).status == 204)
            let second = try #require(try await server.request(erin, role: "write", reason: "INC-9 repair more order rows").string("id"))
            let gusAfter = try #require(try await Self.apiSignIn(server, provider, as: "gus").string("token"))
            #expect(try await server.approve(gusAfter, second).status == 404)
            #expect(try await server.approve(gusBefore, second).status == 404, "an older session has the groups of the newest sign-in")
            // Nobody approves their own request, whatever the provider says.
            try await provider.person("erin", groups: ["oncall", "db-leads"])
            let erinLead = try #require(try await Self.apiSignIn(server, provider, as: "erin").string("token"))
            #expect(try await server.approve(erinLead, second).status == 403)
        }
    }

    @Test("a person is bound to issuer and subject: renamed at the provider they stay themselves, and another account cannot take their name")
    func boundToSubject() async throws {
        try await Self.withSignIn { server, provider in
            try await provider.person("hana", groups: ["oncall"])
            let first = try await Self.apiSignIn(server, provider, as: "hana")
            #expect(first.string("principal") == "hana")
            // The provider renames her and gives her old name to a new account.
            try await provider.person("hana", groups: ["oncall"], renameTo: "hana-moved")
            try await provider.person("hana", groups: ["oncall", "db-leads"])
            let impostor = try await Self.apiSignIn(server, provider, as: "hana")
            #expect(impostor.status == 403)
            #expect(impostor.string("detail")?.contains("already belongs to another account") == true)
            let moved = try await Self.apiSignIn(server, provider, as: "hana-moved")
            #expect(moved.status == 201)
            #expect(moved.string("principal") == "hana", "the bound name stays with the same subject")
            #expect(try await Self.auditEvents(server, action: "identity.sign_in_refused").contains {
                ($0["details"] as? [String: String])?["code"] == "name_taken"
            })

            // A bound person who renames themselves after a name listed in the file stays themselves, without
            // that name's groups; an unbound account cannot take a listed name while no e-mail domain is required.
            try await provider.person("mallory", groups: ["oncall"])
            #expect(try await Self.apiSignIn(server, provider, as: "mallory").string("principal") == "mallory")
            try await provider.person("mallory", groups: ["oncall"], renameTo: "lena")
            let renamed = try await Self.apiSignIn(server, provider, as: "lena")
            #expect(renamed.string("principal") == "mallory")
            #expect((renamed.json["groups"] as? [String]) == ["engineers"], "lena's file groups (leads) are not mallory's")
            try await provider.person("alice", groups: ["oncall"])
            let listed = try await Self.apiSignIn(server, provider, as: "alice")
            #expect(listed.status == 403)
            #expect(listed.string("detail")?.contains("allowed_email_domains") == true)
        }
    }

    @Test("with the provider on, no admin can hold a person's token: tokens are for service accounts, a person's old API token stops working")
    func noTokensForPeople() async throws {
        try await TestProvider.with { provider in
            try await TestServer.with(realTime: true) { server in
                let oldToken = try await server.token(for: "alice")
                #expect(try await server.whoami(oldToken).status == 200)
                try server.writePolicy(Self.resources + provider.identityYAML(baseURL: server.baseURL, oidcExtra: "    allowed_email_domains: [example.test]"),
                                       reload: true)
                let refused = try await server.whoami(oldToken)
                #expect(refused.status == 401)
                #expect(refused.string("code") == ErrorCode.humanTokenRefused)
                for person in ["alice", "erin"] {
                    let create = try await server.createToken(TestServer.adminToken, principal: person)
                    #expect(create.status == 403)
                    #expect(create.string("code") == ErrorCode.humanTokenRefused)
                    #expect(create.string("detail")?.contains("gatehouse login") == true)
                }
                let bot = try await server.token(for: "deploy-bot")
                #expect(try await server.whoami(bot).status == 200)
                // A person from the provider who is also listed in the file keeps the file's groups.
                try await provider.person("alice", groups: [])
                let alice = try await Self.apiSignIn(server, provider, as: "alice")
                #expect(alice.status == 201)
                #expect((alice.json["groups"] as? [String]) == ["engineers"])
            }
        }
    }

    @Test("a principal removed from the policy and added back: the old token, browser session and grants stay dead (no provider needed)")
    func removalIsFinal() async throws {
        try await TestServer.with { server in
            let carol = try await server.token(for: "carol")
            var browser = Browser(baseURL: server.baseURL)
            let form = try await browser.get("/sign-in")
            #expect(try await browser.post("/sign-in", [("csrf", form.csrf ?? ""), ("token", carol)]).location == "/inbox")
            // alice holds a grant, and so does bob, who stays.
            let alice = try await server.token(for: "alice")
            let bob = try await server.token(for: "bob")
            for token in [alice, bob] { #expect(try await server.request(token, role: "read").string("state") == "approved") }
            #expect(try await server.check(bob, role: "read").string("decision") == "allow")
            let without = TestServer.policyYAML.replacingOccurrences(of: "  carol: {groups: [dba]}\n", with: "")
                .replacingOccurrences(of: "  alice: {groups: [engineers]}\n", with: "")
            #expect(without != TestServer.policyYAML)
            try server.writePolicy(without)
            #expect(try await server.reloadPolicy(TestServer.adminToken).json["reloaded"] as? Bool == true)
            try server.writePolicy(TestServer.policyYAML)
            #expect(try await server.reloadPolicy(TestServer.adminToken).json["reloaded"] as? Bool == true)
            #expect(server.service.policies.policy.principals["carol"] != nil, "carol is back in the policy")
            #expect(try await server.whoami(carol).status == 401)
            let page = try await browser.get("/inbox")
            #expect(page.status == 303 && page.location == "/sign-in")
            let ended = try await Self.auditEvents(server, action: "identity.sessions_revoked")
            #expect(ended.contains { ($0["details"] as? [String: String])?["reason"] == "removed from the policy" })
            // A new token made after her return works.
            let fresh = try await server.token(for: "carol")
            #expect(try await server.whoami(fresh).status == 200)
            // alice's grant ended with her removal (audited), and does not come back with her; bob's stands.
            let aliceAgain = try await server.token(for: "alice")
            #expect(try await server.check(aliceAgain, role: "read").string("decision") == "approval_required")
            #expect(try await server.check(bob, role: "read").string("decision") == "allow")
            let revoked = try await Self.auditEvents(server, action: "grant.revoked")
            #expect(revoked.count == 1 && revoked.first?["actor"] as? String == "policy"
                    && (revoked.first?["details"] as? [String: String])?["reason"] == "alice was removed from the policy", "\(revoked)")
        }
    }

    @Test("a requester who signed out can still be approved: a decision judges them by their latest sign-in")
    func requesterSignedOut() async throws {
        try await Self.withSignIn { server, provider in
            try await provider.person("erin", groups: ["oncall"])
            try await provider.person("gus", groups: ["db-leads"])
            let erin = try #require(try await Self.apiSignIn(server, provider, as: "erin").string("token"))
            let id = try #require(try await server.request(erin, role: "write", reason: "INC-11 fix the stuck order rows").string("id"))
            #expect(try await server.logout(erin).status == 204)
            let gus = try #require(try await Self.apiSignIn(server, provider, as: "gus").string("token"))
            let approved = try await server.approve(gus, id)
            #expect(approved.status == 200)
            #expect(approved.string("state") == "approved")
        }
    }

    @Test("signing out of the inbox ends the provider session behind it on the server (not only the cookie), audited as a sign-out")
    func webSignOut() async throws {
        try await Self.withSignIn { server, provider in
            try await provider.person("erin", groups: ["oncall"])
            try await provider.person("sam", groups: ["secops"])
            let sam = try #require(try await Self.apiSignIn(server, provider, as: "sam").string("token"))
            var (browser, _) = try await Self.webSignIn(server, provider, as: "erin")
            let saved = browser.cookies
            func erinsSessions() async throws -> Int { Self.sessions(of: "erin", in: try await server.listSessions(sam)) }
            #expect(try await erinsSessions() == 1)
            let inbox = try await browser.get("/inbox")
            #expect(inbox.status == 200)
            let out = try await browser.post("/sign-out", [("csrf", inbox.csrf ?? "")])
            #expect(out.status == 303 && out.location == "/sign-in")
            #expect(try await erinsSessions() == 0, "the session behind the browser is still live after signing out")
            let events = try await Self.auditEvents(server, action: "identity.signed_out")
            #expect(events.contains { ($0["details"] as? [String: String])?["principal"] == "erin" && $0["actor"] as? String == "erin" }, "\(events)")
            // The cookie, kept and sent again, opens nothing.
            browser.cookies = saved
            #expect(try await browser.get("/inbox").location == "/sign-in")
        }
    }

    @Test("an admin ends a person's sessions: the session token and the browser cookie stop working at once, for good")
    func revokeSessions() async throws {
        try await Self.withSignIn { server, provider in
            try await provider.person("erin", groups: ["oncall"])
            try await provider.person("sam", groups: ["secops"])
            let erin = try #require(try await Self.apiSignIn(server, provider, as: "erin").string("token"))
            var (browser, _) = try await Self.webSignIn(server, provider, as: "erin")
            #expect(try await browser.get("/inbox").status == 200)
            let sam = try #require(try await Self.apiSignIn(server, provider, as: "sam").string("token"))
            let list = try await server.listSessions(sam)
            #expect(list.status == 200)
            #expect(Self.sessions(of: "erin", in: list) == 2)
            #expect(try await server.listSessions(erin).status == 403)
            let ended = try await server.revokeSessions(sam, "erin")
            #expect(ended.status == 200)
            #expect(ended.json["ended"] as? Int == 2)
            #expect(try await server.whoami(erin).status == 401)
            let page = try await browser.get("/inbox")
            #expect(page.status == 303 && page.location == "/sign-in")
            // A name that matches no one is said as such, not as 0 ended.
            let typo = try await server.revokeSessions(sam, "ernie")
            #expect(typo.status == 404 && typo.string("code") == "unknown_principal", "\(typo.json)")
            #expect(typo.string("detail")?.contains("nothing was ended") == true)
            // The bootstrap admin is not in the policy, yet is no typo: its token is left to the environment.
            #expect(try await server.revokeSessions(sam, "admin").status == 200)
        }
    }

    @Test("refusals are clear and leave nothing behind: a person in no policy group, a replayed state, a code used twice, a callback in another browser, a wrong client secret")
    func refusals() async throws {
        try await Self.withSignIn { server, provider in
            // In no mapped group.
            try await provider.person("ivan", groups: ["marketing"])
            let (_, outsider) = try await Self.webSignIn(server, provider, as: "ivan")
            #expect(outsider.status == 403)
            #expect(outsider.html.contains("in no Gatehouse group"))
            let sessions = try await server.listSessions(TestServer.adminToken).json["sessions"] as? [[String: Any]]
            #expect(sessions?.isEmpty == true, "a refused sign-in leaves no session")
            #expect(try await Self.auditEvents(server, action: "identity.sign_in_refused").contains {
                ($0["details"] as? [String: String])?["code"] == "no_policy_group"
            })

            // A callback used twice: the second finds no sign-in under way.
            try await provider.person("erin", groups: ["oncall"])
            var browser = Browser(baseURL: server.baseURL)
            let start = try await browser.get("/auth/sign-in")
            let visit = try await provider.browse(start.location ?? "", as: "erin", stopAt: server.baseURL + "/auth/callback")
            let callback = String((visit.stoppedAt ?? "").dropFirst(server.baseURL.count))
            let stateCookie = browser.cookies[WebInboxNames.provider]
            #expect(try await browser.get(callback).status == 303)
            var replay = Browser(baseURL: server.baseURL)
            replay.cookies[WebInboxNames.provider] = stateCookie
            let replayed = try await replay.get(callback)
            #expect(replayed.status == 401)
            #expect(replayed.html.contains("already used"))

            // The first code with a new sign-in's state: the provider refuses it (used, and not this sign-in's PKCE).
            let code = URLComponents(string: visit.stoppedAt ?? "")?.queryItems?.first { $0.name == "code" }?.value ?? ""
            var again = Browser(baseURL: server.baseURL)
            let restart = try await again.get("/auth/sign-in")
            let state = URLComponents(string: restart.location ?? "")?.queryItems?.first { $0.name == "state" }?.value ?? ""
            let reused = try await again.get("/auth/callback?code=\(code)&state=\(state)")
            #expect(reused.status == 401)
            #expect(reused.html.contains("provider_refused_code"))

            // A callback arriving in a browser that did not start the sign-in.
            var other = Browser(baseURL: server.baseURL)
            let fresh = try await Browser(baseURL: server.baseURL).getting("/auth/sign-in")
            let freshVisit = try await provider.browse(fresh.location ?? "", as: "erin", stopAt: server.baseURL + "/auth/callback")
            let foreign = try await other.get(String((freshVisit.stoppedAt ?? "").dropFirst(server.baseURL.count)))
            #expect(foreign.status == 403)
            #expect(foreign.html.contains("not started in this browser"))

            // The provider refuses Gatehouse's credentials.
            try "not-the-secret".write(toFile: provider.clientSecretFile, atomically: true, encoding: .utf8)
            let (_, wrongSecret) = try await Self.webSignIn(server, provider, as: "erin")
            #expect(wrongSecret.status == 401)
            #expect(wrongSecret.html.contains("client credentials"))
        }
    }

    @Test("the provider unreachable: sign-in says so clearly (page and API), and sessions already open keep working")
    func providerDown() async throws {
        try await Self.withSignIn { server, provider in
            try await provider.person("erin", groups: ["oncall"])
            let erin = try #require(try await Self.apiSignIn(server, provider, as: "erin").string("token"))
            await provider.halt()
            // A new instance (nothing cached) cannot even start a sign-in.
            try await TestServer.with(realTime: true) { fresh in
                try fresh.writePolicy(Self.resources + provider.identityYAML(baseURL: fresh.baseURL), reload: true)
                var browser = Browser(baseURL: fresh.baseURL)
                let page = try await browser.get("/auth/sign-in")
                #expect(page.status == 503)
                #expect(page.html.contains("cannot be reached"))
                let api = try await fresh.send(.POST, "/v1/auth/login", token: nil, json: ["redirect_uri": "http://127.0.0.1:9/callback"])
                #expect(api.status == 503)
                #expect(api.string("code") == ErrorCode.providerUnavailable)
            }
            #expect(try await server.whoami(erin).status == 200)
            #expect(try await server.request(erin, role: "read", reason: "INC-10 provider down, still working").status == 201)
        }
    }

    @Test("the bootstrap admin token can be switched off once admins sign in through the provider; a provider group makes admins")
    func bootstrapAdminOff() async throws {
        try await Self.withSignIn(identityExtra: "  bootstrap_admin: disabled") { server, provider in
            let refused = try await server.whoami(TestServer.adminToken)
            #expect(refused.status == 401)
            #expect(refused.string("detail")?.contains("switched off") == true)
            try await provider.person("sam", groups: ["secops"])
            let sam = try #require(try await Self.apiSignIn(server, provider, as: "sam").string("token"))
            let me = try await server.whoami(sam)
            #expect(me.json["admin"] as? Bool == true)
            #expect(try await server.verifyAudit(sam).status == 200)
        }
    }

    @Test("a session ends by itself at session_max; requests with it are then refused with a clear message")
    func sessionEnds() async throws {
        try await Self.withSignIn { server, provider in
            try await provider.person("erin", groups: ["oncall"])
            let erin = try #require(try await Self.apiSignIn(server, provider, as: "erin").string("token"))
            server.clock.advance(by: 8 * 3600 + 1)
            let late = try await server.whoami(erin)
            #expect(late.status == 401)
            #expect(late.string("code") == ErrorCode.sessionExpired)
        }
    }
}

/// Cookie names of the web inbox, as a browser sees them.
enum WebInboxNames {
    static let session = "gatehouse_session"
    static let provider = "gatehouse_oidc"
}

extension Browser {
    /// One GET with a throwaway cookie jar (the page only).
    func getting(_ path: String) async throws -> Page {
        var copy = self
        return try await copy.get(path)
    }
}
