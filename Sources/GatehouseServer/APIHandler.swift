import Foundation
import GatehouseAPI
import GatehouseApp
import GatehouseCore
import GatehouseStore
import OpenAPIRuntime
import ServiceLifecycle

/// Implements the operations generated from openapi.yaml. Each handler authenticates, calls one
/// `UseCases` use case and maps the domain value to the contract's schema. Errors are thrown
/// as `GatehouseError` and turned into problem+json by `ProblemMiddleware`.
struct APIHandler: APIProtocol {
    let service: UseCases
    let provider: ProviderLink

    /// The caller the middleware authenticated (every path that needs a token goes through it).
    func caller() async throws -> Caller {
        if let caller = RequestInfo.current.caller { return caller }
        return try await service.tokens.authenticate(bearer: RequestInfo.current.bearerToken)
    }

    func limit(_ value: Int?, default fallback: Int = 100, max maximum: Int = 1000) throws(GatehouseError) -> Int {
        let value = value ?? fallback
        guard (1...maximum).contains(value) else {
            throw .invalid("limit", "invalid_limit", "limit must be between 1 and \(maximum)")
        }
        return value
    }

    func cursor(_ raw: String?) throws(GatehouseError) -> PageCursor? {
        guard let raw else { return nil }
        guard let cursor = PageCursor(raw) else { throw .invalid("cursor", "invalid_cursor", PageCursor.problem) }
        return cursor
    }

    func id(_ raw: String) throws(GatehouseError) -> String {
        guard Identifier.isWellFormed(raw) else {
            throw .invalid("id", "invalid_id", "'\(raw.prefix(64))' is not a Gatehouse id (like req_… or grt_…)")
        }
        return raw
    }

    // MARK: health

    func health(_ input: Operations.Health.Input) async throws -> Operations.Health.Output {
        .ok(.init(body: .json(.init(status: "ok", version: BuildInfo.version))))
    }

    func ready(_ input: Operations.Ready.Input) async throws -> Operations.Ready.Output {
        if await service.store.ping() {
            return .ok(.init(body: .json(.init(status: "ready", store: "ok", version: BuildInfo.version))))
        }
        return .serviceUnavailable(.init(body: .json(.init(status: "not ready", store: "unavailable", version: BuildInfo.version))))
    }

    func whoami(_ input: Operations.Whoami.Input) async throws -> Operations.Whoami.Output {
        let caller = try await caller()
        let groups = service.policies.policy.principals[caller.principal]?.groups ?? []
        let token = try await service.tokens.record(of: caller)
        let requestable = service.policies.policy.requestable(by: caller.principal).map {
            Components.Schemas.Requestable(resource: $0.resource, roles: $0.roles, actions: $0.actions)
        }
        return .ok(.init(body: .json(.init(principal: caller.principal, admin: caller.isAdmin, groups: groups,
                                           credential: token?.kind == .session ? .session : .token, expiresAt: token?.expiresAt,
                                           requestable: requestable))))
    }

    // MARK: sign-in

    func startLogin(_ input: Operations.StartLogin.Input) async throws -> Operations.StartLogin.Output {
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("redirect_uri", "missing_body", "send {\"redirect_uri\": \"http://127.0.0.1:PORT/callback\"}") }
        let (url, started) = try await provider.start(purpose: .cli, loopbackRedirect: body.redirectUri, sourceIP: RequestInfo.current.remoteAddress)
        return .created(.init(body: .json(.init(authorizationUrl: url, state: started.state, loginSecret: started.clientSecret ?? "",
                                                expiresAt: started.expiresAt))))
    }

    func completeLogin(_ input: Operations.CompleteLogin.Input) async throws -> Operations.CompleteLogin.Output {
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("code", "missing_body", "send {\"state\", \"code\", \"login_secret\"}") }
        let established = try await provider.finish(state: body.state, code: body.code, purpose: .cli, clientSecret: body.loginSecret,
                                                    sourceIP: RequestInfo.current.remoteAddress)
        return .created(.init(body: .json(.init(token: established.secret, principal: established.caller.principal,
                                                groups: established.groups, expiresAt: established.token.expiresAt ?? Date()))))
    }

    func startDeviceLogin(_ input: Operations.StartDeviceLogin.Input) async throws -> Operations.StartDeviceLogin.Output {
        let (device, secret, expiresAt) = try await provider.startDevice(sourceIP: RequestInfo.current.remoteAddress)
        return .created(.init(body: .json(.init(userCode: device.userCode, verificationUri: device.verificationURI,
                                                verificationUriComplete: device.verificationURIComplete, deviceSecret: secret,
                                                interval: device.interval, expiresAt: expiresAt))))
    }

    func pollDeviceLogin(_ input: Operations.PollDeviceLogin.Input) async throws -> Operations.PollDeviceLogin.Output {
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("device_secret", "missing_body", "send {\"device_secret\": ...}") }
        switch try await provider.pollDevice(secret: body.deviceSecret, sourceIP: RequestInfo.current.remoteAddress) {
        case .pending(let slowDown):
            return .ok(.init(body: .json(.init(status: slowDown ? .slowDown : .pending, interval: slowDown ? 10 : 5))))
        case .signedIn(let established):
            return .created(.init(body: .json(.init(token: established.secret, principal: established.caller.principal,
                                                    groups: established.groups, expiresAt: established.token.expiresAt ?? Date()))))
        }
    }

    func logout(_ input: Operations.Logout.Input) async throws -> Operations.Logout.Output {
        try await service.signIns.signOut(caller: caller())
        return .noContent(.init())
    }

    func listSessions(_ input: Operations.ListSessions.Input) async throws -> Operations.ListSessions.Output {
        let sessions = try await service.signIns.sessions(caller: caller())
        return .ok(.init(body: .json(.init(sessions: sessions.map { t in
            .init(id: t.id, principal: t.principal, groups: t.groups ?? [], issuer: t.issuer ?? "", subject: t.subject ?? "",
                  createdAt: t.createdAt, expiresAt: t.expiresAt ?? t.createdAt)
        }))))
    }

    func revokeSessions(_ input: Operations.RevokeSessions.Input) async throws -> Operations.RevokeSessions.Output {
        let ended = try await service.signIns.revokeAll(caller: caller(), principal: input.path.name)
        return .ok(.init(body: .json(.init(principal: input.path.name, ended: ended))))
    }

    // MARK: requests

    func createRequest(_ input: Operations.CreateRequest.Input) async throws -> Operations.CreateRequest.Output {
        let caller = try await caller()
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("body", "missing_body", "send a JSON body") }
        // The generated layer decoded exactly one of the two shapes (openapi.yaml: NewRequest is a oneOf
        // of closed objects); Problem.fromOneOf explains a body that is neither.
        let input = switch body {
        case .RoleRequest(let role):
            NewRequestInput(resource: role.resource, access: .role(role.role), duration: role.duration, reason: role.reason, ticket: role.ticket)
        case .ActionRequest(let request):
            NewRequestInput(resource: request.resource, access: .action(Self.action(request.action)), duration: request.duration ?? "",
                            reason: request.reason, ticket: request.ticket)
        }
        let (view, created) = try await service.desk.create(caller: caller, input: input, sourceIP: RequestInfo.current.remoteAddress)
        let schema = schema(view, for: caller)
        return created ? .created(.init(body: .json(schema))) : .ok(.init(body: .json(schema)))
    }

    func listRequests(_ input: Operations.ListRequests.Input) async throws -> Operations.ListRequests.Output {
        let caller = try await caller()
        let scope = RequestDesk.Scope(rawValue: (input.query.scope ?? .mine).rawValue) ?? .mine
        let state = input.query.state.flatMap { RequestState(rawValue: $0.rawValue) }
        let page = try await service.desk.list(caller: caller, scope: scope, state: state, limit: limit(input.query.limit),
                                               cursor: cursor(input.query.cursor))
        return .ok(.init(body: .json(.init(requests: page.items.map { schema($0, for: caller) }, nextCursor: page.next?.text))))
    }

    func getRequest(_ input: Operations.GetRequest.Input) async throws -> Operations.GetRequest.Output {
        let caller = try await caller()
        let view = if let wait = input.query.wait {
            try await service.desk.waitForDecision(caller: caller, id: id(input.path.id), wait: wait,
                                                   stopping: { Task.isShuttingDownGracefully })
        } else {
            try await service.desk.get(caller: caller, id: id(input.path.id))
        }
        return .ok(.init(body: .json(schema(view, for: caller))))
    }

    func approveRequest(_ input: Operations.ApproveRequest.Input) async throws -> Operations.ApproveRequest.Output {
        let comment: String? = if case .json(let body)? = input.body { body.comment } else { nil }
        let caller = try await caller()
        let view = try await service.desk.decide(caller: caller, id: id(input.path.id), decision: .approve, comment: comment)
        return .ok(.init(body: .json(schema(view, for: caller))))
    }

    func denyRequest(_ input: Operations.DenyRequest.Input) async throws -> Operations.DenyRequest.Output {
        guard case .json(let body) = input.body else { throw Self.missingComment }
        let comment = body.comment
        let caller = try await caller()
        let view = try await service.desk.decide(caller: caller, id: id(input.path.id), decision: .deny, comment: comment)
        return .ok(.init(body: .json(schema(view, for: caller))))
    }

    func cancelRequest(_ input: Operations.CancelRequest.Input) async throws -> Operations.CancelRequest.Output {
        let caller = try await caller()
        let view = try await service.desk.cancel(caller: caller, id: id(input.path.id))
        return .ok(.init(body: .json(schema(view, for: caller))))
    }

    static let missingComment = GatehouseError.invalid("comment", ErrorCode.missingComment, "send {\"comment\": \"why\"}: a denial or a report says why")

    // MARK: anti-spam

    func reportRequest(_ input: Operations.ReportRequest.Input) async throws -> Operations.ReportRequest.Output {
        guard case .json(let body) = input.body else { throw Self.missingComment }
        let comment = body.comment
        let caller = try await caller()
        let view = try await service.desk.report(caller: caller, id: id(input.path.id), comment: comment)
        return .ok(.init(body: .json(schema(view, for: caller))))
    }

    func reviewRequest(_ input: Operations.ReviewRequest.Input) async throws -> Operations.ReviewRequest.Output {
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("decision", "missing_body", "send {\"decision\": \"release\"} or {\"decision\": \"reject\"}") }
        let caller = try await caller()
        let view = try await service.desk.review(caller: caller, id: id(input.path.id), release: body.decision == .release, comment: body.comment)
        return .ok(.init(body: .json(schema(view, for: caller))))
    }

    func listPrincipals(_ input: Operations.ListPrincipals.Input) async throws -> Operations.ListPrincipals.Output {
        let flags = try await service.principals.flagged(caller: caller(), blocked: input.query.blocked ?? false, throttled: input.query.throttled ?? false)
        return .ok(.init(body: .json(.init(principals: flags.map(Self.schema)))))
    }

    func unblockPrincipal(_ input: Operations.UnblockPrincipal.Input) async throws -> Operations.UnblockPrincipal.Output {
        let flags = try await service.principals.unblock(caller: caller(), principal: input.path.name)
        return .ok(.init(body: .json(Self.schema(flags))))
    }

    func listNotifications(_ input: Operations.ListNotifications.Input) async throws -> Operations.ListNotifications.Output {
        let notifications = try await service.principals.notifications(caller: caller(), recipient: input.query.recipient, limit: limit(input.query.limit))
        return .ok(.init(body: .json(.init(notifications: notifications.map {
            .init(id: $0.id, recipient: $0.recipient, kind: .init(rawValue: $0.kind.rawValue) ?? .request, requestIds: $0.requestIds,
                  summary: $0.summary, createdAt: $0.createdAt, updatedAt: $0.updatedAt, sentAt: $0.sentAt)
        }))))
    }

    static func schema(_ f: PrincipalFlags) -> Components.Schemas.PrincipalFlags {
        .init(principal: f.principal, blocked: f.isBlocked, blockedAt: f.blockedAt, blockedBy: f.blockedBy, blockReason: f.blockReason,
              throttledUntil: f.throttledUntil, throttleReason: f.throttleReason)
    }

    // MARK: grants

    func listGrants(_ input: Operations.ListGrants.Input) async throws -> Operations.ListGrants.Output {
        let page = try await service.grants.list(caller: caller(), all: input.query.scope == .all, activeOnly: input.query.active ?? false,
                                                limit: limit(input.query.limit), cursor: cursor(input.query.cursor))
        let now = service.clock.now()
        return .ok(.init(body: .json(.init(grants: page.items.map { Self.schema($0, now: now) }, nextCursor: page.next?.text))))
    }

    func getGrant(_ input: Operations.GetGrant.Input) async throws -> Operations.GetGrant.Output {
        let grant = try await service.grants.get(caller: caller(), id: id(input.path.id))
        return .ok(.init(body: .json(Self.schema(grant, now: service.clock.now()))))
    }

    func releaseGrant(_ input: Operations.ReleaseGrant.Input) async throws -> Operations.ReleaseGrant.Output {
        let grant = try await service.grants.release(caller: caller(), id: id(input.path.id))
        return .ok(.init(body: .json(Self.schema(grant, now: service.clock.now()))))
    }

    func revokeGrant(_ input: Operations.RevokeGrant.Input) async throws -> Operations.RevokeGrant.Output {
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("reason", "missing_reason", "say why the grant is revoked") }
        let grant = try await service.grants.revoke(caller: caller(), id: id(input.path.id), reason: body.reason)
        return .ok(.init(body: .json(Self.schema(grant, now: service.clock.now()))))
    }

    // MARK: check

    func check(_ input: Operations.Check.Input) async throws -> Operations.Check.Output {
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("body", "missing_body", "send a JSON body") }
        return .ok(.init(body: .json(try await check(body: body))))
    }

    /// The check itself, for the generated route and for `CheckFastPath` alike.
    func check(body: Components.Schemas.CheckInput) async throws -> Components.Schemas.CheckResult {
        let caller = try await caller()
        switch body {
        case .ActionCheck(let check):
            return try await checkAction(caller, resource: check.resource, action: Self.action(check.action), principal: check.principal)
        case .RoleCheck(let check):
            let (principal, decision) = try await service.checks.check(caller: caller, resource: check.resource, role: check.role, principal: check.principal)
            return Self.checkResult(principal: principal, resource: check.resource, role: check.role, decision: decision)
        }
    }

    static func checkResult(principal: String, resource: String, role: String, decision: CheckDecision) -> Components.Schemas.CheckResult {
        var result = Components.Schemas.CheckResult(decision: .deny, principal: principal, resource: resource, role: role)
        switch decision {
        case .allow(let grant):
            result.decision = .allow
            result.grantId = grant.id
            result.expiresAt = grant.expiresAt
            result.reason = "grant \(grant.id) (\(grant.role)) is active until \(grant.expiresAt.rfc3339)"
        case .approvalRequired(let command, let reason):
            result.decision = .approvalRequired
            result.requestCommand = command
            result.reason = reason
        case .deny(let reason):
            result.reason = reason
        }
        return result
    }

    private func checkAction(_ caller: Caller, resource: String, action: Action, principal: String?) async throws -> Components.Schemas.CheckResult {
        let (subject, decision, classification) = try await service.checks.checkAction(caller: caller, resource: resource, action: action, principal: principal)
        var result = Components.Schemas.CheckResult(decision: .deny, principal: subject, resource: resource,
                                                    classification: Self.schema(classification, action: action))
        switch decision {
        case .allowByRole(let grant), .allowOnce(let grant):
            result.decision = .allow
            result.role = grant.role
            result.grantId = grant.id
            result.expiresAt = grant.expiresAt
            if case .allowOnce = decision {
                result.usedGrant = true
                result.reason = "one-shot grant \(grant.id) for exactly this \(action.kind.rawValue) is now used up"
            } else {
                result.reason = "grant \(grant.id) (\(grant.role)) allows \(classification.risk.rawValue) actions until \(grant.expiresAt.rfc3339)"
            }
        case .approvalRequired(let commands, let reason):
            result.decision = .approvalRequired
            result.requestCommands = commands
            result.requestCommand = commands.first
            result.reason = reason
        case .deny(let reason):
            result.reason = reason
        }
        return result
    }

    func classify(_ input: Operations.Classify.Input) async throws -> Operations.Classify.Output {
        let caller = try await caller()
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("body", "missing_body", "send a JSON body") }
        let action = Self.action(body)
        if let problem = action.problem { throw GatehouseError.invalid("text", "invalid_action", problem) }
        let classification = await service.checks.classify(action, normalize: true, for: caller.principal)
        return .ok(.init(body: .json(Self.schema(classification, action: action))))
    }

    static func action(_ input: Components.Schemas.ActionInput) -> Action {
        Action(kind: input.kind == .sql ? .sql : .shell, text: input.text)
    }

    static func schema(_ c: ActionClassification, action: Action) -> Components.Schemas.Classification {
        .init(kind: c.kind == .sql ? .sql : .shell, risk: Components.Schemas.Risk(rawValue: c.risk.rawValue) ?? .dangerous,
              statements: c.statements,
              findings: c.findings.map {
                  .init(category: $0.category, level: Components.Schemas.Risk(rawValue: $0.level.rawValue) ?? .dangerous,
                        statement: $0.statement, position: $0.position, detail: $0.detail)
              },
              normalized: c.normalized, sha256: action.digest)
    }

    // MARK: audit

    func listAudit(_ input: Operations.ListAudit.Input) async throws -> Operations.ListAudit.Output {
        if let after = input.query.afterSeq, after < 0 {
            throw GatehouseError.invalid("after_seq", "invalid_after_seq", "after_seq must be 0 or more")
        }
        // A principal is a name: a text that cannot be one is refused, as everywhere a name is taken.
        if let principal = input.query.principal, !PolicyLoader.isValidName(principal) {
            throw GatehouseError.invalid("principal", "invalid_name", "that is not a principal name: \(PolicyLoader.nameRule)")
        }
        let filter = StoreSession.AuditFilter(since: input.query.since, actorOrSubject: input.query.principal, resource: input.query.resource,
                                              afterSeq: input.query.afterSeq, limit: try limit(input.query.limit, max: 10_000))
        let events = try await service.audit.events(caller: caller(), filter: filter)
        return .ok(.init(body: .json(.init(events: events.map {
            .init(seq: $0.seq, at: $0.at, actor: $0.actor, action: $0.action, subject: $0.subject, resource: $0.resource,
                  details: .init(additionalProperties: $0.details), prevHash: $0.prevHash, hash: $0.hash)
        }))))
    }

    func verifyAudit(_ input: Operations.VerifyAudit.Input) async throws -> Operations.VerifyAudit.Output {
        let anchors = try AuditChain.Anchor.parse(input.query.anchor ?? [])
        let result = try await service.audit.verify(caller: caller(), anchors: anchors)
        return .ok(.init(body: .json(.init(ok: result.ok, eventsChecked: result.eventsChecked, brokenAt: result.brokenAt, problem: result.problem,
                                           headSeq: result.head?.seq, headHash: result.head?.hash))))
    }

    // MARK: tokens and policy

    func createToken(_ input: Operations.CreateToken.Input) async throws -> Operations.CreateToken.Output {
        let caller = try await caller()
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("principal", "missing_body", "send {\"principal\": NAME}") }
        let (record, secret) = try await service.tokens.create(caller: caller, principal: body.principal, description: body.description)
        return .created(.init(body: .json(.init(id: record.id, principal: record.principal, token: secret))))
    }

    func listTokens(_ input: Operations.ListTokens.Input) async throws -> Operations.ListTokens.Output {
        let tokens = try await service.tokens.list(caller: caller(), includeRevoked: input.query.includeRevoked ?? false)
        return .ok(.init(body: .json(.init(tokens: tokens.map(Self.schema)))))
    }

    func revokeToken(_ input: Operations.RevokeToken.Input) async throws -> Operations.RevokeToken.Output {
        let token = try await service.tokens.revoke(caller: caller(), id: id(input.path.id))
        return .ok(.init(body: .json(Self.schema(token))))
    }

    func reloadPolicy(_ input: Operations.ReloadPolicy.Input) async throws -> Operations.ReloadPolicy.Output {
        let result = try await service.housekeeping.reloadPolicy(caller: caller())
        return .ok(.init(body: .json(.init(reloaded: result.reloaded, problems: result.problems))))
    }

    // MARK: mapping

    /// A request as the caller may see it: the spam score and its signals are shown to approvers,
    /// reviewers and admins, not to the requester (nothing to tune a flood against).
    func schema(_ view: RequestView, for caller: Caller) -> Components.Schemas.AccessRequest {
        var schema = Self.schema(view)
        if !RequestPermissions.canSeeSpamScore(caller.principal, isAdmin: caller.isAdmin, view.request) { schema.antispam = nil }
        return schema
    }

    static func schema(_ view: RequestView) -> Components.Schemas.AccessRequest {
        let r = view.request
        return .init(
            id: r.id, state: Components.Schemas.RequestState(rawValue: r.state.rawValue) ?? .pending, requester: r.requester,
            resource: r.resource, role: r.role, duration: r.duration.description, reason: r.reason, ticket: r.ticket,
            approvalsRequired: r.approvalsRequired,
            approvals: view.approvals.map {
                .init(approver: $0.approver, decision: $0.decision == .approve ? .approve : .deny, comment: $0.comment, at: $0.at,
                      counted: $0.decision == .approve && !view.counts($0) ? false : nil)
            },
            createdAt: r.createdAt, pendingExpiresAt: r.pendingExpiresAt, decidedAt: r.decidedAt, decidedBy: r.decidedBy,
            stateReason: r.stateReason, grantId: r.grantId,
            action: r.action.map {
                .init(kind: $0.kind == .sql ? .sql : .shell, text: $0.text, sha256: $0.digest,
                      risk: Components.Schemas.Risk(rawValue: $0.risk.rawValue) ?? .dangerous, categories: $0.categories,
                      normalized: $0.normalized)
            },
            antispam: r.spam.map { spam in
                .init(score: spam.score, action: .init(rawValue: spam.action.rawValue) ?? .allow,
                      signals: spam.signals.map { .init(signal: $0.signal.rawValue, count: $0.count, points: $0.points, detail: $0.detail) })
            })
    }

    static func schema(_ g: Grant, now: Date) -> Components.Schemas.Grant {
        .init(id: g.id, state: Components.Schemas.Grant.StatePayload(rawValue: g.state(at: now)) ?? .expired, requestId: g.requestId,
              principal: g.principal, resource: g.resource, role: g.role,
              allows: Components.Schemas.Grant.AllowsPayload(rawValue: g.allows.rawValue) ?? .read,
              startsAt: g.startsAt, expiresAt: g.expiresAt, endedAt: g.endedAt, endedBy: g.endedBy, endComment: g.endComment,
              actionSha256: g.actionDigest, breakGlass: g.breakGlass ? true : nil)
    }

    // MARK: break-glass and webhooks

    func breakGlass(_ input: Operations.BreakGlass.Input) async throws -> Operations.BreakGlass.Output {
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("body", "missing_body", "send a JSON body") }
        let caller = try await caller()
        let (_, _, use) = try await service.breakGlass.use(caller: caller, input: NewRequestInput(
            resource: body.resource, role: body.role, duration: body.duration ?? "", reason: body.reason, ticket: body.ticket))
        return .created(.init(body: .json(Self.schema(use))))
    }

    func listBreakGlass(_ input: Operations.ListBreakGlass.Input) async throws -> Operations.ListBreakGlass.Output {
        let uses = try await service.breakGlass.uses(caller: caller(), awaitingReview: input.query.awaitingReview ?? false, limit: limit(input.query.limit))
        return .ok(.init(body: .json(.init(uses: uses.map(Self.schema)))))
    }

    func reviewBreakGlass(_ input: Operations.ReviewBreakGlass.Input) async throws -> Operations.ReviewBreakGlass.Output {
        guard case .json(let body) = input.body else { throw GatehouseError.invalid("comment", "missing_comment", "send {\"comment\": \"...\"}") }
        let use = try await service.breakGlass.review(caller: caller(), grantId: id(input.path.id), comment: body.comment)
        return .ok(.init(body: .json(Self.schema(use))))
    }

    func listWebhookDeliveries(_ input: Operations.ListWebhookDeliveries.Input) async throws -> Operations.ListWebhookDeliveries.Output {
        let deliveries = try await service.outbox.deliveries(caller: caller(), limit: limit(input.query.limit))
        return .ok(.init(body: .json(.init(deliveries: deliveries.map { d in
            .init(id: d.id, endpoint: d.endpoint, event: d.event,
                  state: d.deliveredAt != nil ? .delivered : d.failedAt != nil ? .failed : .queued,
                  attempts: d.attempts, lastStatus: d.lastStatus, createdAt: d.createdAt, nextAttemptAt: d.nextAttemptAt,
                  deliveredAt: d.deliveredAt, failedAt: d.failedAt)
        }))))
    }

    static func schema(_ u: BreakGlassUse) -> Components.Schemas.BreakGlassUse {
        .init(grantId: u.grantId, requestId: u.requestId, principal: u.principal, resource: u.resource, role: u.role, reason: u.reason,
              at: u.at, expiresAt: u.expiresAt, reviewRequired: u.reviewRequired, awaitingReview: u.awaitsReview,
              reviewedAt: u.reviewedAt, reviewedBy: u.reviewedBy, reviewComment: u.reviewComment)
    }

    static func schema(_ t: TokenRecord) -> Components.Schemas.TokenInfo {
        .init(id: t.id, principal: t.principal, description: t.description, createdAt: t.createdAt, createdBy: t.createdBy, revokedAt: t.revokedAt)
    }
}
