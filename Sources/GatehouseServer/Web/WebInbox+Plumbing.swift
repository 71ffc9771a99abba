import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseStore
import HTTPTypes
import Hummingbird
import Logging
import Mustache
import NIOCore

/// What every page and form of the inbox goes through: sessions, CSRF and origin checks, rendering,
/// security headers, cookies, form fields and the small formatting helpers of the view models.
extension WebInbox {
    // MARK: plumbing

    /// Runs a GET page for a signed-in user, or sends the browser to the sign-in page.
    func page(_ request: Request, countInbox: Bool = true, _ body: (Caller, [String: Any]) async throws -> Response) async throws -> Response {
        guard let cookie = cookieValue(Self.sessionCookie, request), let (caller, session) = try await service.webSessions.caller(cookie: cookie) else {
            return Self.redirect("/sign-in")
        }
        return try await body(caller, try await layoutData(caller, session, countInbox: countInbox))
    }

    /// Runs a form POST: a live session, a same-site origin and the session's CSRF token, or 403.
    func form(_ request: Request, _ body: (Caller, WebSession, [String: String]) async throws -> Response) async throws -> Response {
        try checkOrigin(request)
        guard let cookie = cookieValue(Self.sessionCookie, request), let (caller, session) = try await service.webSessions.caller(cookie: cookie) else {
            throw GatehouseError(.unauthorized, "signed_out", "your session has ended; sign in again and repeat what you did")
        }
        let fields = try await Self.formFields(request)
        guard let given = fields["csrf"], TokenSecret.constantTimeEqual(given, session.csrf) else {
            throw GatehouseError(.forbidden, "csrf_failed", "the form did not carry this session's security token, so nothing was done; reload the page and submit it again")
        }
        return try await body(caller, session, fields)
    }

    /// The header: who is signed in, the CSRF token for its forms, and the inbox and review counts
    /// (the inbox page counts its own list).
    func layoutData(_ caller: Caller, _ session: WebSession, countInbox: Bool) async throws -> [String: Any] {
        let waiting = countInbox ? try await service.desk.list(caller: caller, scope: .toApprove, state: nil, limit: 200).items.count : 0
        let policy = service.policies.policy
        let reviews = try await service.breakGlass.uses(caller: caller, awaitingReview: true, limit: 200)
            .filter { $0.principal != caller.principal && (caller.isAdmin || policy.isBreakGlassReviewer(caller.principal, resource: $0.resource)) }.count
        var data: [String: Any] = ["user": ["name": caller.principal, "admin": caller.isAdmin] as [String: Any], "csrf": session.csrf]
        if policy.notifications.slack != nil { data["slack"] = true }
        if waiting > 0 { data["inboxCount"] = waiting }
        if reviews > 0 { data["reviewCount"] = reviews }
        return data
    }

    /// Turns errors into an HTML page with the right status; nothing escapes as a bare 500.
    func guarded(_ request: Request, _ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch {
            let problem = Problem.from(error)
            if problem.status >= 500, problem.status != 503 {
                logger.error("web page failed", metadata: ["path": "\(request.uri.path)", "cause": "\(type(of: error))"])
            }
            if problem.status == 401, request.uri.path != "/sign-in", !request.uri.path.hasPrefix("/auth/") { return Self.redirect("/sign-in") }
            return render("error", title: Problem.title(for: problem.status), data: [
                "heading": Problem.title(for: problem.status), "message": problem.detail,
                "back": Self.backLink(for: request), "backText": "Go back",
            ], layout: [:], status: HTTPResponse.Status(code: problem.status))
        }
    }

    func render(_ template: String, title: String, data: [String: Any], layout: [String: Any], nav: String? = nil,
                request: Request? = nil, status: HTTPResponse.Status = .ok) -> Response {
        // Whatever people typed is shown as it is: control, format and invisible characters are written
        // out (`\u{202e}`) instead of reordering or hiding the text around them.
        var data = Self.visible(data) as? [String: Any] ?? data
        // Forms inside the page carry the session's CSRF token.
        if data["csrf"] == nil, let csrf = layout["csrf"] { data["csrf"] = csrf }
        let content = library.render(data, withTemplate: template) ?? ""
        var page = layout
        page["title"] = title
        page["content"] = content
        if let nav { page["nav"] = [nav: true] }
        if let done = request?.uri.queryParameters["done"].map(String.init), let text = Self.flashes[done] {
            page["flash"] = ["kind": "ok", "text": text]
        }
        let html = library.render(page, withTemplate: "layout") ?? ""
        var headers = Self.securityHeaders()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static func visible(_ value: Any) -> Any {
        switch value {
        case let text as String: TextRules.visible(text, keepLineBreaks: true)
        case let object as [String: Any]: object.mapValues(visible)
        case let list as [Any]: list.map(visible)
        default: value
        }
    }

    /// Where an error page leads back to: the page a form came from, derived from the form's own
    /// route (never from the Referer, which another site controls).
    static func backLink(for request: Request) -> String {
        let parts = request.uri.path.split(separator: "/").map(String.init)
        guard request.method == .post, parts.count == 3, (try? validID(parts[1])) != nil else { return "/inbox" }
        switch parts[0] {
        case "requests": return "/requests/\(parts[1])"
        case "grants": return "/grants"
        case "break-glass": return "/break-glass"
        default: return "/inbox"
        }
    }

    static let flashes = [
        "approved": "Approved: the grant is active now.", "recorded": "Your approval is recorded; more approvals are needed.",
        "denied": "Denied. The requester sees your comment.", "reported": "Reported: the requester is blocked and the reviewers are told.",
        "canceled": "Canceled.", "released": "Released: the access has ended.", "revoked": "Revoked: the access has ended.",
        "reviewed": "Marked reviewed.", "held-released": "Released: the approvers are told now.", "held-rejected": "Rejected.",
    ]

    static func securityHeaders() -> HTTPFields {
        var headers = HTTPFields()
        headers[HTTPField.Name("Content-Security-Policy")!] = contentSecurityPolicy
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        return headers
    }

    static func redirect(_ location: String) -> Response {
        var headers = securityHeaders()
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    /// The inbox is reached over https: the configured base URL says so, or a TLS-ending proxy does.
    func isHTTPS(_ request: Request) -> Bool {
        service.policies.policy.notifications.baseURL?.lowercased().hasPrefix("https://") == true
            || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
    }

    /// A cookie's name as sent: over https with the `__Host-` prefix, which browsers accept only from this
    /// very host, `Secure`, for the whole site and without a Domain, so that no other host of the domain
    /// (nor a page over http) can set one in its place.
    func cookieName(_ name: String, request: Request) -> String {
        isHTTPS(request) ? "__Host-" + name : name
    }

    /// HttpOnly, SameSite=Lax, for the whole site; `Secure` (and `__Host-`) when the inbox is reached over
    /// https. Values are ids Gatehouse made (or empty).
    func cookie(_ name: String, _ value: String, request: Request, maxAge: Int) -> String {
        let cookie = Cookie(name: cookieName(name, request: request), value: value, maxAge: maxAge, path: "/",
                            secure: isHTTPS(request), httpOnly: true, sameSite: .lax)
        return cookie.description
    }

    /// The value of one of the inbox's cookies, or nil when it is missing or sent more than once: a second
    /// cookie of the same name was set by someone else (another path, another host of the domain), and
    /// neither is taken.
    func cookieValue(_ name: String, _ request: Request) -> String? {
        let name = cookieName(name, request: request)
        var found: [Substring] = []
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " }
                guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
                found.append(trimmed[trimmed.index(after: equals)...])
            }
        }
        guard found.count == 1, let value = found.first else { return nil }
        return String(value.trimmingCharacters(in: CharacterSet(charactersIn: " \"")))
    }

    /// A POST from another site is refused whatever it carries (browsers send Origin on POSTs).
    /// Same site means the Host the request was sent to, or the configured `notifications.base_url`
    /// (behind a proxy that rewrites Host).
    func checkOrigin(_ request: Request) throws {
        if request.headers[HTTPField.Name("Sec-Fetch-Site")!] == "cross-site" {
            throw GatehouseError(.forbidden, "cross_site", "this form was sent from another site; open Gatehouse directly and submit it there")
        }
        guard let origin = request.headers[.origin] else { return }
        let host = (request.head.authority ?? "").lowercased()
        let publicHost = service.policies.policy.notifications.baseURL.flatMap { Self.hostAndPort(of: $0) }
        guard origin != "null", let given = Self.hostAndPort(of: origin), given == host || given == publicHost else {
            throw GatehouseError(.forbidden, "cross_site", "this form was sent from \(origin.prefix(100)), not from Gatehouse; open Gatehouse directly and submit it there")
        }
    }

    /// `host[:port]` of a URL, lowercased.
    static func hostAndPort(of url: String) -> String? {
        guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else { return nil }
        return (host + (components.port.map { ":\($0)" } ?? "")).lowercased()
    }

    /// `application/x-www-form-urlencoded` fields, read up to 64 KiB (a larger form is a 413 page). A body of
    /// another type (`text/plain`, which a cross-site form may also send, or multipart) is refused unread.
    static func formFields(_ request: Request) async throws -> [String: String] {
        var request = request
        let limit = RequestInfoMiddleware.publicBodyBytes
        let type = request.headers[.contentType].map(ContractMiddleware.mediaType)
        guard type == "application/x-www-form-urlencoded" else {
            throw GatehouseError(.invalid, "malformed_form", "the form is sent as \(type.map { "`\(Problem.shown($0))`" } ?? "no content type"), not `application/x-www-form-urlencoded`, so nothing was done; submit the inbox's own form")
        }
        try RequestInfoMiddleware.refuseDeclaredOver(limit, request, "the form")
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: limit) } catch let error where Problem.from(error).status == 413 {
            throw RequestInfoMiddleware.tooLarge(limit, "the form")
        }
        return try formFields(Array(buffer.readableBytesView))
    }

    /// A form's fields: text that is not UTF-8 (raw or percent-encoded) and a name given twice are refused
    /// (they would be stored as replacement characters, or one of two values picked). A body that is not a
    /// form at all (browsers always send one) reads as fields without the CSRF token, and is refused as a
    /// forged form, which is what it is.
    static func formFields(_ bytes: [UInt8]) throws(GatehouseError) -> [String: String] {
        let unreadable = GatehouseError(.invalid, "malformed_form", "the form's text is not URL-encoded UTF-8, so nothing was done; submit the inbox's own form")
        guard let text = String(validating: bytes, as: UTF8.self) else { throw unreadable }
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decoded(_ part: Substring) -> String? { part.replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
            guard let name = decoded(parts[0]), let value = decoded(parts.count > 1 ? parts[1] : "") else { throw unreadable }
            guard fields[name] == nil else {
                throw GatehouseError(.invalid, "duplicate_field", "the form gives `\(Problem.shown(name))` twice, so nothing was done; submit the inbox's own form")
            }
            // A comment box's lines (a textarea sends CRLF) are joined with spaces: comments are one line.
            fields[name] = name == "comment" ? Self.oneLine(value) : value
        }
        return fields
    }

    /// Text with its line breaks (CRLF, CR, LF) each made one space; other control characters stay, for the
    /// comment rules to refuse.
    static func oneLine(_ text: String) -> String {
        text.replacingOccurrences(of: "\r\n", with: " ").replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
    }

    static func validID(_ raw: String) throws(GatehouseError) -> String {
        guard Identifier.isWellFormed(raw) else {
            throw GatehouseError(.notFound, "invalid_id", "'\(raw.prefix(64))' is not a Gatehouse id (like req_… or grt_…)")
        }
        return raw
    }

    static func row(_ r: AccessRequest, for caller: Caller) -> [String: Any] {
        var row: [String: Any] = ["id": r.id, "requester": r.requester, "what": what(r), "duration": r.duration.description,
                                  "reason": r.reason, "state": r.state.rawValue, "created": when(r.createdAt)]
        if let ticket = r.ticket { row["ticket"] = ticket }
        if let spam = r.spam, spam.score != 0, RequestPermissions.canSeeSpamScore(caller.principal, isAdmin: caller.isAdmin, r) {
            row["spam"] = ["score": spam.score, "level": level(spam.score)]
        }
        return row
    }

    static func what(_ r: AccessRequest) -> String {
        if let action = r.action { return "\(r.resource): one \(action.kind.rawValue) action (\(action.risk.rawValue))" }
        return "\(r.resource)/\(r.role)"
    }

    static func level(_ score: Int) -> String { score >= 8 ? "high" : score >= 4 ? "mid" : "low" }

    /// `2026-11-23 10:00 UTC` (with seconds for the audit log).
    static func when(_ date: Date, seconds: Bool = false) -> String {
        let text = date.rfc3339
        return String(text.prefix(seconds ? 19 : 16)).replacingOccurrences(of: "T", with: " ") + " UTC"
    }
}
