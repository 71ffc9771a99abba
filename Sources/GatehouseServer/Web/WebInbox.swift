import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseStore
import HTTPTypes
import Hummingbird
import Logging
import Mustache
import NIOCore

/// The approvers' web inbox: server-rendered pages over the same use cases as the API. Every
/// page works without JavaScript (there is none: the Content-Security-Policy forbids scripts).
/// A browser signs in with a token and then holds an HttpOnly, SameSite=Lax session cookie
/// (Secure when the inbox is served over https); every form carries the session's CSRF token,
/// and a POST whose Origin is another site is refused as well.
struct WebInbox {
    let service: UseCases
    let provider: ProviderLink
    let library: MustacheLibrary
    let logger: Logger

    static let sessionCookie = "gatehouse_session"
    static let signInCookie = "gatehouse_signin"
    /// Holds the state of a sign-in through the provider: the callback must come to the browser that started it.
    static let providerCookie = "gatehouse_oidc"
    static let contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    init(service: UseCases, provider: ProviderLink, logger: Logger) throws {
        self.service = service
        self.provider = provider
        self.library = try WebTemplates.library()
        self.logger = logger
    }

    func register(on router: Router<GatehouseRequestContext>) {
        router.get("/") { _, _ in Self.redirect("/inbox") }
        router.get("/static/gatehouse.css") { _, _ in
            var headers = Self.securityHeaders()
            headers[.contentType] = "text/css; charset=utf-8"
            headers[.cacheControl] = "max-age=3600"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: WebTemplates.css)))
        }
        router.get("/sign-in") { request, _ in try await self.guarded(request) { try await self.signInPage(request) } }
        router.post("/sign-in") { request, context in try await self.guarded(request) { try await self.signIn(request, context) } }
        router.get("/auth/sign-in") { request, context in try await self.guarded(request) { try await self.startProviderSignIn(request, context) } }
        router.get("/auth/callback") { request, context in try await self.guarded(request) { try await self.providerCallback(request, context) } }
        router.post("/sign-out") { request, _ in
            try await self.guarded(request) {
                try await self.form(request) { caller, _, _ in
                    if let cookie = self.cookieValue(Self.sessionCookie, request) { try await self.service.webSessions.signOut(cookie: cookie, caller: caller) }
                    var response = Self.redirect("/sign-in")
                    response.headers.append(HTTPField(name: .setCookie, value: self.cookie(Self.sessionCookie, "", request: request, maxAge: 0)))
                    return response
                }
            }
        }
        router.get("/inbox") { request, _ in
            try await self.guarded(request) { try await self.page(request, countInbox: false) { try await self.inbox($0, $1, request) } }
        }
        router.get("/mine") { request, _ in try await self.guarded(request) { try await self.page(request) { try await self.mine($0, $1, request) } } }
        router.get("/requests/:id") { request, context in
            try await self.guarded(request) { try await self.page(request) { try await self.requestPage($0, $1, request, id: context.parameters.get("id") ?? "") } }
        }
        router.post("/requests/:id/decide") { request, context in
            try await self.guarded(request) { try await self.form(request) { try await self.decide($0, $2, id: context.parameters.get("id") ?? "") } }
        }
        router.post("/requests/:id/review") { request, context in
            try await self.guarded(request) {
                try await self.form(request) { caller, _, fields in
                    let id = try Self.validID(context.parameters.get("id") ?? "")
                    guard let choice = fields["review"], choice == "release" || choice == "reject" else {
                        throw GatehouseError.invalid("review", "invalid_review", "choose Release or Reject")
                    }
                    let view = try await self.service.desk.review(caller: caller, id: id, release: choice == "release", comment: fields["comment"])
                    return Self.redirect("/requests/\(id)?done=\(view.request.state == .pending ? "held-released" : "held-rejected")")
                }
            }
        }
        router.post("/requests/:id/cancel") { request, context in
            try await self.guarded(request) {
                try await self.form(request) { caller, _, _ in
                    let id = try Self.validID(context.parameters.get("id") ?? "")
                    _ = try await self.service.desk.cancel(caller: caller, id: id)
                    return Self.redirect("/requests/\(id)?done=canceled")
                }
            }
        }
        // Linking a Slack account: a one-time code shown here, typed into Slack's link form by the person.
        router.get("/slack/link") { request, _ in
            try await self.guarded(request) {
                try await self.page(request) { caller, layout in
                    self.render("slack-link", title: "Link your Slack account", data: ["name": caller.principal], layout: layout)
                }
            }
        }
        router.post("/slack/link") { request, _ in
            try await self.guarded(request) {
                try await self.form(request) { caller, session, _ in
                    let made = try await self.service.slack.makeLinkCode(caller: caller)
                    let layout = try await self.layoutData(caller, session, countInbox: true)
                    return self.render("slack-link", title: "Link your Slack account",
                                       data: ["name": caller.principal, "code": made.code, "expires": made.expiresAt.rfc3339], layout: layout)
                }
            }
        }
        router.get("/grants") { request, _ in try await self.guarded(request) { try await self.page(request) { try await self.grants($0, $1, request) } } }
        router.post("/grants/:id/release") { request, context in
            try await self.guarded(request) {
                try await self.form(request) { caller, _, _ in
                    _ = try await self.service.grants.release(caller: caller, id: Self.validID(context.parameters.get("id") ?? ""))
                    return Self.redirect("/grants?done=released")
                }
            }
        }
        router.post("/grants/:id/revoke") { request, context in
            try await self.guarded(request) {
                try await self.form(request) { caller, _, fields in
                    let reason = (fields["reason"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                    guard !reason.isEmpty else { throw GatehouseError.invalid("reason", "missing_reason", "say why the grant is revoked") }
                    _ = try await self.service.grants.revoke(caller: caller, id: Self.validID(context.parameters.get("id") ?? ""), reason: reason)
                    return Self.redirect("/grants?done=revoked")
                }
            }
        }
        router.get("/break-glass") { request, _ in try await self.guarded(request) { try await self.page(request) { try await self.breakGlassPage($0, $1, request) } } }
        router.post("/break-glass/:id/review") { request, context in
            try await self.guarded(request) {
                try await self.form(request) { caller, _, fields in
                    _ = try await self.service.breakGlass.review(caller: caller, grantId: Self.validID(context.parameters.get("id") ?? ""),
                                                                comment: fields["comment"] ?? "")
                    return Self.redirect("/break-glass?done=reviewed")
                }
            }
        }
        router.get("/audit") { request, _ in try await self.guarded(request) { try await self.page(request) { try await self.auditPage($0, $1, request) } } }
    }

    // MARK: sign-in

    func signInPage(_ request: Request) async throws -> Response {
        if let cookie = self.cookieValue(Self.sessionCookie, request), try await service.webSessions.caller(cookie: cookie) != nil {
            return Self.redirect("/inbox")
        }
        // Double-submit token: a sign-in form posted from another site cannot know it.
        let token = Identifier.make("si", bytes: 20)
        var data: [String: Any] = ["csrf": token]
        if let settings = provider.settings {
            data["provider"] = settings.displayName
            data["sessionMax"] = settings.sessionMax.description
        }
        var response = render("sign-in", title: "Sign in", data: data, layout: [:])
        response.headers.append(HTTPField(name: .setCookie, value: cookie(Self.signInCookie, token, request: request, maxAge: 1800)))
        return response
    }

    func signIn(_ request: Request, _ context: GatehouseRequestContext) async throws -> Response {
        try checkOrigin(request)
        let fields = try await Self.formFields(request)
        guard let expected = self.cookieValue(Self.signInCookie, request), let given = fields["csrf"], TokenSecret.constantTimeEqual(expected, given) else {
            throw GatehouseError(.forbidden, "csrf_failed", "the sign-in form had expired or came from another page; open the sign-in page again and retry")
        }
        let (cookie, _, _) = try await service.webSessions.signIn(token: fields["token"] ?? "", sourceIP: context.clientAddress)
        var response = Self.redirect("/inbox")
        response.headers.append(HTTPField(name: .setCookie, value: self.cookie(Self.sessionCookie, cookie, request: request, maxAge: Int(WebSessions.lifetime))))
        response.headers.append(HTTPField(name: .setCookie, value: self.cookie(Self.signInCookie, "", request: request, maxAge: 0)))
        return response
    }

    /// Sends the browser to the provider; the state also goes into a cookie, so the callback is
    /// accepted only in the browser that started (no signing someone into another person's account).
    func startProviderSignIn(_ request: Request, _ context: GatehouseRequestContext) async throws -> Response {
        let (url, started) = try await provider.start(purpose: .web, sourceIP: context.clientAddress)
        var headers = Self.securityHeaders()
        headers[.location] = url
        headers[.cacheControl] = "no-store"
        var response = Response(status: .seeOther, headers: headers)
        response.headers.append(HTTPField(name: .setCookie, value: cookie(Self.providerCookie, started.state, request: request, maxAge: Int(SignIns.pendingLifetime))))
        return response
    }

    func providerCallback(_ request: Request, _ context: GatehouseRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let state = query["state"].map(String.init) ?? ""
        // Only the browser that started the sign-in gets past here (and only then is anything taken or audited).
        guard let expected = self.cookieValue(Self.providerCookie, request), !state.isEmpty, TokenSecret.constantTimeEqual(expected, state) else {
            throw GatehouseError(.forbidden, ErrorCode.signInRefused, "this sign-in was not started in this browser (or it already finished); start again from the sign-in page")
        }
        if let error = query["error"].map(String.init) {
            let detail = query["error_description"].map { ": " + String($0.prefix(200)) } ?? ""
            _ = try? await service.signIns.take(state: state, purpose: .web)
            await service.signIns.refuse(SignInRefusal("provider_error", "the provider answered \(error.prefix(64))\(detail)"), issuer: provider.settings?.issuer,
                                         subject: nil, sourceIP: context.clientAddress)
            throw GatehouseError(.unauthorized, ErrorCode.signInRefused, "the identity provider did not sign you in (\(error.prefix(64))\(detail)); try again from the sign-in page")
        }
        let established = try await provider.finish(state: state, code: query["code"].map(String.init) ?? "", purpose: .web,
                                                    sourceIP: context.clientAddress)
        let (cookie, session) = try await service.signIns.openWebSession(established)
        var response = Self.redirect("/inbox")
        let maxAge = max(60, Int(session.expiresAt.timeIntervalSince(service.clock.now())))
        response.headers.append(HTTPField(name: .setCookie, value: self.cookie(Self.sessionCookie, cookie, request: request, maxAge: maxAge)))
        response.headers.append(HTTPField(name: .setCookie, value: self.cookie(Self.providerCookie, "", request: request, maxAge: 0)))
        return response
    }

    // MARK: pages

    func inbox(_ caller: Caller, _ layout: [String: Any], _ request: Request) async throws -> Response {
        let waiting = try await service.desk.list(caller: caller, scope: .toApprove, state: nil, limit: 200).items
        var layout = layout
        if !waiting.isEmpty { layout["inboxCount"] = waiting.count }
        let policy = service.policies.policy
        let held = policy.isReviewer(caller.principal) ? try await service.desk.list(caller: caller, scope: .all, state: .quarantined, limit: 50).items : []
        return render("inbox", title: "Inbox", data: [
            "requests": waiting.map { Self.row($0.request, for: caller) }, "empty": "Nothing is waiting for your decision.",
            "quarantined": held.map { Self.row($0.request, for: caller) }, "hasQuarantined": !held.isEmpty,
        ], layout: layout, nav: "inbox", request: request)
    }

    func mine(_ caller: Caller, _ layout: [String: Any], _ request: Request) async throws -> Response {
        let mine = try await service.desk.list(caller: caller, scope: .mine, state: nil, limit: 200).items
        return render("requests", title: "My requests", data: [
            "heading": "My requests", "requests": mine.map { Self.row($0.request, for: caller) },
            "empty": "You have not asked for anything yet. Use `gatehouse request RESOURCE --role ROLE --for 30m --reason ...`.",
        ], layout: layout, nav: "mine", request: request)
    }

    func requestPage(_ caller: Caller, _ layout: [String: Any], _ request: Request, id: String) async throws -> Response {
        let view = try await service.desk.get(caller: caller, id: Self.validID(id))
        let r = view.request
        let history = try await service.desk.history(of: r.requester, for: caller, limit: 11).filter { $0.id != r.id }.prefix(10)
        let flags = try await service.principals.flags(of: r.requester)
        let now = service.clock.now()
        var object: [String: Any] = [
            "id": r.id, "requester": r.requester, "resource": r.resource, "role": r.role, "duration": r.duration.description,
            "reason": r.reason, "state": r.state.rawValue, "approvalsRequired": r.approvalsRequired,
            "created": Self.when(r.createdAt), "pending": r.state == .pending, "expires": Self.when(r.pendingExpiresAt),
        ]
        if let ticket = r.ticket { object["ticket"] = ticket }
        if let by = r.decidedBy { object["decidedBy"] = by }
        if let at = r.decidedAt { object["decided"] = Self.when(at) }
        if let why = r.stateReason { object["stateReason"] = why }
        if let action = r.action {
            let shown = action.normalized ?? action.text
            object["action"] = ["kind": action.kind.rawValue, "risk": action.risk.rawValue, "categories": action.categories,
                                "shown": shown, "text": action.text, "differs": shown != action.text, "sha256": action.digest] as [String: Any]
        }
        let mayDecide = r.state == .pending && now < r.pendingExpiresAt && service.desk.mayDecide(caller, r)
        let decided = mayDecide ? try await service.desk.hasDecided(view, caller: caller) : false
        var data: [String: Any] = [
            "r": object,
            "approvals": view.approvals.map { a -> [String: Any] in
                var row: [String: Any] = ["approver": a.approver, "decision": a.decision == .approve ? "approved" : "denied", "at": Self.when(a.at)]
                if let comment = a.comment { row["comment"] = comment }
                if a.decision == .approve, !view.counts(a) { row["notCounted"] = true }
                return row
            },
            "hasApprovals": !view.approvals.isEmpty,
            "approvedCount": view.approvals.filter(view.counts).count,
            "canDecide": mayDecide && !decided,
            "canCancel": r.state == .pending && r.requester == caller.principal,
            "canReview": r.state == .quarantined && r.requester != caller.principal && service.policies.policy.isReviewer(caller.principal),
            "history": history.map { Self.row($0, for: caller) },
            "flags": ["blocked": flags?.isBlocked ?? false, "throttled": flags?.isThrottled(at: now) ?? false],
        ]
        let showSpam = RequestPermissions.canSeeSpamScore(caller.principal, isAdmin: caller.isAdmin, r)
        data["showSpam"] = showSpam
        if let spam = r.spam, showSpam {
            data["spam"] = ["score": spam.score, "action": spam.action.rawValue, "level": Self.level(spam.score),
                            "signals": spam.signals.map { ["name": $0.signal.rawValue, "points": ($0.points >= 0 ? "+" : "") + "\($0.points)", "detail": $0.detail] }] as [String: Any]
        }
        // A confirmation is shown only when it matches the request's state (a link cannot fake one).
        let done = request.uri.queryParameters["done"].map(String.init)
        let consistent: [String: RequestState] = ["approved": .approved, "recorded": .pending, "denied": .denied, "canceled": .canceled,
                                                  "held-released": .pending, "held-rejected": .denied]
        let showFlash = done.map { consistent[$0].map { $0 == r.state } ?? ($0 == "reported") } ?? false
        return render("request", title: "Request \(r.id)", data: data, layout: layout, nav: "inbox", request: showFlash ? request : nil)
    }

    func decide(_ caller: Caller, _ fields: [String: String], id raw: String) async throws -> Response {
        let id = try Self.validID(raw)
        let comment = fields["comment"]
        switch fields["decision"] {
        case "approve":
            let view = try await service.desk.decide(caller: caller, id: id, decision: .approve, comment: comment)
            return Self.redirect("/requests/\(id)?done=\(view.request.state == .approved ? "approved" : "recorded")")
        case "deny":
            _ = try await service.desk.decide(caller: caller, id: id, decision: .deny, comment: comment)
            return Self.redirect("/requests/\(id)?done=denied")
        case "report":
            _ = try await service.desk.report(caller: caller, id: id, comment: comment)
            return Self.redirect("/requests/\(id)?done=reported")
        default:
            throw GatehouseError.invalid("decision", "invalid_decision", "choose Approve, Deny or Report")
        }
    }

    func grants(_ caller: Caller, _ layout: [String: Any], _ request: Request) async throws -> Response {
        let grants = try await service.grants.list(caller: caller, all: caller.isAdmin, activeOnly: true, limit: 500).items
        let now = service.clock.now()
        return render("grants", title: "Grants", data: [
            "heading": caller.isAdmin ? "Active grants (everyone)" : "My active grants",
            "grants": grants.map { g -> [String: Any] in
                ["id": g.id, "requestId": g.requestId, "principal": g.principal, "resource": g.resource, "role": g.role,
                 "allows": g.allows.rawValue, "expires": Self.when(g.expiresAt), "state": g.state(at: now), "breakGlass": g.breakGlass,
                 "canRelease": g.principal == caller.principal && g.isActive(at: now), "canRevoke": caller.isAdmin && g.isActive(at: now)]
            },
        ], layout: layout, nav: "grants", request: request)
    }

    func breakGlassPage(_ caller: Caller, _ layout: [String: Any], _ request: Request) async throws -> Response {
        let uses = try await service.breakGlass.uses(caller: caller, awaitingReview: false, limit: 200)
        let policy = service.policies.policy
        let ordered = uses.filter(\.awaitsReview) + uses.filter { !$0.awaitsReview }
        return render("break-glass", title: "Break-glass", data: [
            "uses": ordered.map { u -> [String: Any] in
                var row: [String: Any] = ["grantId": u.grantId, "requestId": u.requestId, "principal": u.principal, "resource": u.resource,
                                          "role": u.role, "reason": u.reason, "at": Self.when(u.at), "expires": Self.when(u.expiresAt),
                                          "awaiting": u.awaitsReview,
                                          "canReview": u.principal != caller.principal && (caller.isAdmin || policy.isBreakGlassReviewer(caller.principal, resource: u.resource))]
                if let by = u.reviewedBy { row["reviewedBy"] = by; row["reviewComment"] = u.reviewComment ?? "" }
                return row
            },
        ], layout: layout, nav: "breakGlass", request: request)
    }

    func auditPage(_ caller: Caller, _ layout: [String: Any], _ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        func text(_ name: String) -> String? {
            guard let value = query[Substring(name)].map(String.init)?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
            return String(value.prefix(128))
        }
        var filter = StoreSession.AuditFilter(actorOrSubject: text("who"), resource: text("resource"), action: text("action"),
                                              newestFirst: true, limit: 100)
        if let since = text("since") {
            guard let date = try? Date(since + "T00:00:00Z", strategy: .iso8601) else {
                throw GatehouseError.invalid("since", "invalid_since", "since must be a date like 2026-11-23")
            }
            filter.since = date
        }
        if let before = text("before") {
            guard let seq = Int64(before), seq > 0 else { throw GatehouseError.invalid("before", "invalid_before", "before must be an event number") }
            filter.upToSeq = seq - 1
        }
        let events = try await service.audit.events(caller: caller, filter: filter)
        let verification = try await service.audit.verify(caller: caller)
        var older: String?
        if events.count == filter.limit, let last = events.last {
            var items = [URLQueryItem(name: "before", value: "\(last.seq)")]
            for name in ["who", "resource", "action", "since"] { if let value = text(name) { items.append(URLQueryItem(name: name, value: value)) } }
            var components = URLComponents()
            components.path = "/audit"
            components.queryItems = items
            older = components.string
        }
        let verifyText = verification.ok
            ? "Chain verified: \(verification.eventsChecked) events, every hash links to the one before."
            : "CHAIN BROKEN at event \(verification.brokenAt.map(String.init) ?? "?"): \(verification.problem ?? "a hash does not match"). The log was altered outside Gatehouse."
        var data: [String: Any] = [
            "verify": ["ok": verification.ok, "text": verifyText] as [String: Any],
            "filters": ["who": text("who") ?? "", "resource": text("resource") ?? "", "action": text("action") ?? "", "since": text("since") ?? ""],
            "events": events.map { e -> [String: Any] in
                var row: [String: Any] = ["seq": e.seq, "at": Self.when(e.at, seconds: true), "actor": e.actor, "action": e.action, "subject": e.subject,
                                          "details": e.details.sorted { $0.key < $1.key }.map { ["key": $0.key, "value": $0.value] }]
                if let resource = e.resource { row["resource"] = resource }
                return row
            },
        ]
        if let older { data["older"] = older }
        return render("audit", title: "Audit log", data: data, layout: layout, nav: "audit", request: request)
    }
}
