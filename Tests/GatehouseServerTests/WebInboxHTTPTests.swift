import AsyncHTTPClient
import Foundation
import GatehouseCore
import NIOCore
import NIOHTTP1
import Testing

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

            // Behind a TLS-ending proxy the cookies are Secure and named `__Host-`: no other host of the domain
            // (nor a page over http) can set one in their place.
            var secure = Browser(baseURL: server.baseURL)
            let https = [("X-Forwarded-Proto", "https")]
            let page = try await secure.send(.GET, "/sign-in", form: nil, headers: https)
            #expect(page.headers["Set-Cookie"].first?.hasPrefix("__Host-gatehouse_signin=") == true, "\(page.headers["Set-Cookie"])")
            let tls = try await secure.post("/sign-in", [("csrf", page.csrf ?? ""), ("token", t["bob"]!)], headers: https)
            #expect(tls.status == 303 && tls.location == "/inbox", "\(tls.status) \(tls.html.prefix(300))")
            let secureCookie = try #require(tls.headers["Set-Cookie"].first { $0.hasPrefix("__Host-gatehouse_session=") })
            #expect(secureCookie.contains("; Secure") && secureCookie.contains("Path=/") && !secureCookie.contains("Domain"), "\(secureCookie)")
            #expect(try await secure.send(.GET, "/inbox", form: nil, headers: https).status == 200)
            // Over https the plain name is not taken, and a session cookie sent twice (the second one planted by
            // another path or host) opens nothing: neither is taken.
            let planted = try #require(secure.cookies["__Host-gatehouse_session"])
            #expect(try await secure.send(.GET, "/inbox", form: nil, headers: https).status == 200)
            var plain = Browser(baseURL: server.baseURL)
            plain.cookies = ["gatehouse_session": planted]
            #expect(try await plain.send(.GET, "/inbox", form: nil, headers: https).location == "/sign-in")
            let inboxOther = other.cookies["gatehouse_session"] ?? ""
            var twice = Browser(baseURL: server.baseURL)
            let doubled = try await twice.send(.GET, "/inbox", form: nil, headers: [("Cookie", "gatehouse_session=\(inboxOther); gatehouse_session=\(inboxOther)")])
            #expect(doubled.location == "/sign-in")
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
            // Text that is not UTF-8, and a field given twice, are refused as such (not stored as U+FFFD, not
            // one of two values picked, not called a forged form).
            let notUTF8 = try await bob.post("/requests/\(id)/decide", rawForm: "csrf=\(csrf)&decision=deny&comment=%FF%FE%80")
            #expect(notUTF8.status == 400 && notUTF8.html.contains("not URL-encoded UTF-8"), "\(notUTF8.status): \(notUTF8.html.suffix(400))")
            let twice = try await bob.post("/requests/\(id)/decide", rawForm: "csrf=\(csrf)&decision=approve&decision=deny&comment=x")
            #expect(twice.status == 400 && twice.html.contains("decision` twice"), "\(twice.status): \(twice.html.suffix(400))")
            // A body of another type, as a cross-site form may send (`text/plain`), is refused unread, though it carries the token.
            for type in ["text/plain", "multipart/form-data; boundary=x"] {
                let plain = try await bob.post("/requests/\(id)/decide", rawForm: "csrf=\(csrf)&decision=deny&comment=x", contentType: type)
                #expect(plain.status == 400 && plain.html.contains("not `application/x-www-form-urlencoded`"), "\(plain.status): \(plain.html.suffix(400))")
            }
            // A form over the limit is a page too, naming the limit (not the API's JSON).
            let huge = try await bob.post("/requests/\(id)/decide", rawForm: "csrf=\(csrf)&decision=deny&comment=" + String(repeating: "x", count: 70_000))
            #expect(huge.status == 413 && huge.headers.first(name: "Content-Type")?.hasPrefix("text/html") == true
                    && huge.html.contains("the form is larger than 64 KiB"), "\(huge.status): \(huge.html.components(separatedBy: "<main").last ?? "")")
            #expect(try await server.readRequest(t["bob"]!, id).string("state") == "pending")

            // Another session's token does not work either.
            var alice = Browser(baseURL: server.baseURL)
            _ = try await alice.signIn(t["alice"]!)
            let aliceCSRF = try #require(try await alice.get("/mine").csrf)
            #expect(try await bob.post("/requests/\(id)/decide", [("decision", "approve"), ("csrf", aliceCSRF)]).status == 403)

            let approved = try await bob.post("/requests/\(id)/decide", [("decision", "approve"), ("csrf", csrf), ("comment", "ok")],
                                              headers: [("Origin", server.baseURL)])
            #expect(approved.status == 303)
            #expect(approved.location == "/requests/\(id)?done=approved")
            #expect(try await server.readRequest(t["bob"]!, id).string("state") == "approved")
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
            // The comment box's lines (a textarea sends CRLF) are joined with spaces: comments are one line.
            let denied = try await bob.post("/requests/\(second)/decide", rawForm: "csrf=\(csrf)&decision=deny&comment=use+the%0D%0Aread+role")
            #expect(denied.status == 303, "\(denied.status): \(denied.html.suffix(400))")
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
            #expect(try await server.readRequest(t["bob"]!, id).string("state") == "pending")
        }
    }

    @Test("HTML and script in reasons, comments and filters are escaped on every page")
    func escaping() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let evil = "INC-7 <script>alert('x')</script><img src=x onerror=alert(1)> \"quoted\" & " + String(repeating: "W", count: 3000)
            let id = try #require(try await server.request(t["alice"]!, reason: evil).string("id"))
            _ = try await server.deny(t["bob"]!, id, comment: "<b onmouseover=x>no</b>")
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

    @Test("an exact statement with a right-to-left override or other invisible characters is shown with them written out; free text with them is refused")
    func invisibleCharacters() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let sql = "UPDATE accounts SET note = 'paid\u{202E}52.0 :ecnalab' WHERE id = 7\u{2060}"
            let created = try await server.requestAction(t["alice"]!, text: sql)
            #expect(created.status == 201, "\(String(decoding: created.body, as: UTF8.self))")
            let id = try #require(created.string("id"))
            var bob = Browser(baseURL: server.baseURL)
            _ = try await bob.signIn(t["bob"]!)
            let page = try await bob.get("/requests/\(id)")
            #expect(page.status == 200)
            #expect(!page.html.unicodeScalars.contains("\u{202E}"), "the override reaches the page raw")
            #expect(!page.html.unicodeScalars.contains("\u{2060}"))
            #expect(page.html.contains("\\u{202e}"))
            for hidden in ["\u{2060}", "\u{00AD}", "\u{E0041}", "\u{3164}", "\u{2028}"] {
                let refused = try await server.request(t["alice"]!, reason: "INC-9 fix\(hidden) the rows")
                #expect(refused.status == 400)
                #expect(refused.string("code") == "deceptive_character")
            }
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
            #expect(junk.status == 400 && junk.html.contains("not URL-encoded UTF-8"), "\(junk.status)")  // `%%%` is no encoding
            let inbox = try await bob.get("/inbox")
            let signOut = try await bob.post("/sign-out", [("csrf", inbox.csrf ?? "")])
            #expect(signOut.status == 303)
            #expect(try await bob.get("/inbox").location == "/sign-in")
            // Signed in with an API token, signing out ends the browser's session, not the token (an admin's to revoke).
            #expect(try await server.whoami(t["bob"]!).status == 200)

            var carol = Browser(baseURL: server.baseURL)
            _ = try await carol.signIn(t["carol"]!)
            let saved = carol.cookies
            #expect(try await carol.get("/inbox").status == 200)
            let tokens = try await server.listTokens(TestServer.adminToken)
            let carolToken = try #require((tokens.json["tokens"] as? [[String: Any]])?.first { $0["principal"] as? String == "carol" }?["id"] as? String)
            #expect(try await server.revokeToken(TestServer.adminToken, carolToken).status == 200)
            carol.cookies = saved
            #expect(try await carol.get("/inbox").location == "/sign-in")
        }
    }
}
