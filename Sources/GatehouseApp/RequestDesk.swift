import Foundation
import GatehouseCore
import GatehouseStore

/// The request desk: file a request, list and read requests, decide, cancel, and wait for a
/// decision. Filing runs the anti-spam gate (`RequestDesk+Filing.swift`); reports and reviews of
/// held requests are in `RequestDesk+Reports.swift`.
public struct RequestDesk: Sendable {
    let context: AppContext
    let tarpit: Tarpit
    let watch: RequestWatch
    let lanes: PrincipalLanes

    init(_ context: AppContext, tarpit: Tarpit, watch: RequestWatch, lanes: PrincipalLanes = PrincipalLanes()) {
        self.context = context
        self.tarpit = tarpit
        self.watch = watch
        self.lanes = lanes
    }

    /// Files a request. `created` is false when the identical request was already waiting (it is
    /// returned instead, and nobody is notified again). An action request is classified here (with
    /// the policy's `guard:` settings) and, without a duration, gets the resource's longest.
    public func create(caller: Caller, input given: NewRequestInput, sourceIP: String? = nil) async throws -> (view: RequestView, created: Bool) {
        var input = given
        // What cannot be a name is said so (400), as a check says it, rather than looked up and not found.
        let role: String? = if case .role(let name) = input.access { name } else { nil }
        try AccessChecks.requireNames(["resource": input.resource, "role": role])
        var classification: ActionClassification?
        if case .action(let action) = input.access {
            if let problem = action.problem { throw GatehouseError.invalid("action", "invalid_action", problem) }
            let policy = context.policies.policy
            classification = await context.actionGuard.classify(action, settings: policy.guardSettings, normalize: true, for: caller.principal)
            if input.duration.isEmpty {
                input.duration = policy.resources[input.resource]?.actions?.maxDuration.description ?? "1h"
            }
        }
        return try await file(caller: caller, input: input, classification: classification, sourceIP: sourceIP)
    }

    public enum Scope: String, Sendable { case mine, toApprove = "to_approve", all }

    /// A page of requests, newest first, from `cursor` on. With scope `to_approve` the query asks only for the
    /// roles the caller approves (so the next page's cursor names a request they may see); a page can still
    /// hold fewer than `limit` (their own requests, and those they already decided, are left out) and have a
    /// next one.
    public func list(caller: Caller, scope: Scope, state: RequestState?, limit: Int, cursor: PageCursor? = nil) async throws -> Page<RequestView> {
        let policy = context.policies.policy
        var filter = StoreSession.RequestFilter(states: state.map { [$0] }, before: cursor, limit: limit)
        switch scope {
        case .mine:
            filter.requester = caller.principal
        case .toApprove:
            // Held requests (and their reasons) are for reviewers: approvers hear of a request only once released.
            if state == .quarantined, !RequestPermissions.canSeeHeld(caller.principal, isAdmin: caller.isAdmin, policy: policy) {
                return Page(items: [], next: nil)
            }
            filter.states = [state ?? .pending]
            filter.roles = RequestPermissions.approvableRoles(caller.principal, policy: policy)
        case .all:
            // Reviewers find what the anti-spam policy holds with `--all --state quarantined`.
            if !caller.isAdmin, !(state == .quarantined && policy.isReviewer(caller.principal)) {
                throw GatehouseError(.forbidden, ErrorCode.adminOnly, "only admins can list all requests (reviewers: those in state quarantined); use scope mine or to_approve", field: "scope")
            }
        }
        let query = filter
        let (requests, views) = try await context.read { session in
            let requests = try await session.requests(query)
            guard scope == .toApprove else { return (requests, try await AppContext.withApprovals(requests, session: session)) }
            let visible = requests.filter { RequestPermissions.canDecide(caller.principal, $0, policy: policy) }
            // Waiting for *my* approval: not the ones I already decided, unless my approval stopped counting.
            var waiting: [RequestView] = []
            for view in try await AppContext.withApprovals(visible, session: session) {
                if try await Self.decided(view, by: caller, session: session) { continue }
                waiting.append(view)
            }
            return (requests, waiting)
        }
        let next = Page(fetched: requests, limit: limit) { PageCursor(at: $0.createdAt, id: $0.id) }.next
        return Page(items: views, next: next)
    }

    /// Whether `caller` has decided the request with a decision that still counts (one made with a token
    /// revoked since by someone else does not: they may decide again).
    static func decided(_ view: RequestView, by caller: Caller, session: StoreSession) async throws -> Bool {
        guard let own = view.approvals.first(where: { $0.approver == caller.principal }) else { return false }
        guard own.tokenId != caller.tokenId else { return true }
        return try await lostStanding([own], session: session).isEmpty
    }

    /// The same for one request, in a read of its own (the web inbox's request page).
    public func hasDecided(_ view: RequestView, caller: Caller) async throws -> Bool {
        try await context.read { try await Self.decided(view, by: caller, session: $0) }
    }

    public func get(caller: Caller, id: String) async throws -> RequestView {
        let policy = context.policies.policy
        let view = try await context.read { session -> RequestView? in
            guard let request = try await session.request(id: id) else { return nil }
            let approvals = try await session.approvals(requestId: id)
            // While it waits, the approvals that would no longer count towards it are said as such.
            let lost = request.state == .pending
                ? try await Self.lostStanding(approvals, session: session, eligible: Self.eligibleApprovers(request, policy: policy)) : []
            return RequestView(request: request, approvals: approvals, notCounted: lost)
        }
        guard let view, RequestPermissions.canSee(caller.principal, isAdmin: caller.isAdmin, view.request, policy: context.policies.policy) else {
            throw GatehouseError(.notFound, ErrorCode.requestNotFound, "no request \(id) that you can see; list yours with `gatehouse requests`")
        }
        return view
    }

    public func decide(caller: Caller, id: String, decision: ApprovalDecision, comment: String?) async throws -> RequestView {
        let result: Result<RequestView, GatehouseError> = try await context.write(as: caller) { session, policy, now in
            try await AppContext.refuseIfBlocked(caller.principal, session)
            // Someone who may not see the request learns nothing about it, not even that it was decided.
            guard let request = try await session.request(id: id),
                  RequestPermissions.canSee(caller.principal, isAdmin: caller.isAdmin, request, policy: policy) else {
                throw GatehouseError(.notFound, ErrorCode.requestNotFound, "no request \(id); list pending ones with `gatehouse requests --to-approve`")
            }
            let approvals = try await session.approvals(requestId: id)
            if decision == .approve, try await session.principalFlags(request.requester)?.isBlocked == true {
                throw GatehouseError(.conflict, "requester_blocked", "\(request.requester) is blocked by the anti-spam policy; their requests cannot be approved until an admin unblocks them (deny it instead)")
            }
            let discounted = try await Self.lostStanding(approvals, session: session, eligible: Self.eligibleApprovers(request, policy: policy))
            let outcome = try RequestLifecycle.decide(request, existing: approvals, approver: caller.principal, decision: decision,
                                                      comment: comment, policy: policy, now: now, grantId: Identifier.make("grt"),
                                                      discounted: discounted)
            // The caller's own earlier approval, which no longer counts (its token was revoked by someone
            // else): this decision replaces it, so one person is still one row.
            let replaced = approvals.first { $0.approver == caller.principal }
            let others = approvals.filter { $0.approver != caller.principal }
            var replacing: [String: String] = [:]
            if let replaced {
                // What the replaced row said, kept in the log (the row itself goes).
                var kept: TokenRecord?
                if let tokenId = replaced.tokenId { kept = try await session.token(id: tokenId) }
                replacing = AuditEntry.compact([
                    "replaces": "the approval of \(replaced.at.rfc3339), " + (kept == nil ? "whose token is no longer kept" : "whose token was revoked since"),
                    "replaced_token": replaced.tokenId, "replaced_comment": replaced.comment,
                ])
            }
            func record(_ approval: Approval) async throws {
                if replaced != nil { try await session.deleteApproval(requestId: id, approver: caller.principal) }
                try await session.insertApproval(approval)
            }
            switch outcome {
            case .recorded(var approval, let counted):
                approval.tokenId = caller.tokenId
                try await record(approval)
                try await session.appendAudit([AuditEntry(actor: caller.principal, action: .approvalRecorded, subject: id, resource: request.resource,
                                                          details: AuditEntry.compact(["principal": request.requester, "comment": approval.comment,
                                                                                       "approvals": "\(counted)/\(max(request.approvalsRequired, 1))"])
                                                              .merging(replacing) { kept, _ in kept }.merging(caller.origin) { kept, _ in kept })], at: now)
                // Still waiting: the approvals that did not count are said as such (the caller's own was replaced).
                return .success(RequestView(request: request, approvals: others + [approval], notCounted: discounted.subtracting([caller.principal])))
            case .approved(var approval, let updated, let grant):
                // Others' approvals that did not count (the caller's own, if any, is replaced).
                let uncounted = discounted.subtracting([caller.principal])
                // The caller's earlier approval, counted again (it stopped counting while they were out of the policy):
                // it stays as it was, and approves the request now.
                let recounted = replaced == approval
                if recounted {
                    replacing = ["recounted": "the approval of \(approval.at.rfc3339), which counts again under the policy as it is now"]
                } else {
                    approval.tokenId = caller.tokenId
                    try await record(approval)
                }
                guard try await session.updateRequest(updated, from: .pending) else { throw AppErrors.raced(id) }
                try await session.insertGrant(grant)
                try await session.appendAudit([
                    AuditEntry(actor: caller.principal, action: .requestApproved, subject: id, resource: request.resource,
                               details: AuditEntry.compact(["principal": request.requester, "comment": approval.comment, "grant_id": grant.id,
                                                            "not_counted": uncounted.isEmpty ? nil : uncounted.sorted().joined(separator: ",")])
                                   .merging(replacing) { kept, _ in kept }.merging(caller.origin) { kept, _ in kept }),
                    AuditEntry.grantStarted(grant),
                ], at: now)
                return .success(RequestView(request: updated, approvals: others + [approval]))
            case .denied(var approval, let updated):
                approval.tokenId = caller.tokenId
                try await record(approval)
                guard try await session.updateRequest(updated, from: .pending) else { throw AppErrors.raced(id) }
                try await session.appendAudit([AuditEntry(actor: caller.principal, action: .requestDenied, subject: id, resource: request.resource,
                                                          details: AuditEntry.compact(["principal": request.requester, "comment": approval.comment])
                                                              .merging(replacing) { kept, _ in kept }.merging(caller.origin) { kept, _ in kept })], at: now)
                return .success(RequestView(request: updated, approvals: others + [approval]))
            case .expired(let updated):
                // Record the expiry the sweeper has not written yet, then refuse the decision.
                if try await session.updateRequest(updated, from: request.state) {
                    try await session.appendAudit([AuditEntry.requestExpired(updated)], at: now)
                }
                return .failure(GatehouseError(.conflict, "request_expired", "request \(id) expired at \(request.pendingExpiresAt.rfc3339) before it was decided; the requester must file a new one"))
            }
        }
        await watch.changed(id)
        return try result.get()
    }

    /// Who may approve the request's role under `policy` now; nil when the role is gone (then nothing is decided).
    static func eligibleApprovers(_ request: AccessRequest, policy: Policy) -> Set<String>? {
        policy.resources[request.resource]?.role(named: request.role).map { policy.eligibleApprovers(for: $0) }
    }

    /// Earlier approvers whose approvals no longer count: blocked since, the token they approved with revoked
    /// by someone else (an admin, a policy change; their own sign-out does not count), or (given `eligible`)
    /// no longer among the role's approvers under the policy as it is now. A token the store no longer has
    /// (pruned a month after it expired) is taken as revoked: fail closed.
    static func lostStanding(_ approvals: [Approval], session: StoreSession, eligible: Set<String>? = nil) async throws -> Set<String> {
        var lost: Set<String> = []
        for approval in approvals where approval.decision == .approve {
            if let eligible, !eligible.contains(approval.approver) {
                lost.insert(approval.approver)
            } else if try await session.principalFlags(approval.approver)?.isBlocked == true {
                lost.insert(approval.approver)
            } else if let tokenId = approval.tokenId {
                let token = try await session.token(id: tokenId)
                if token == nil || (token?.revokedAt != nil && token?.revokedBy != approval.approver) { lost.insert(approval.approver) }
            }
        }
        return lost
    }

    public func cancel(caller: Caller, id: String) async throws -> RequestView {
        let view = try await context.write(as: caller) { session, _, now in
            guard let request = try await session.request(id: id),
                  RequestPermissions.canCancel(caller.principal, isAdmin: caller.isAdmin, request) else {
                throw GatehouseError(.notFound, ErrorCode.requestNotFound, "no request \(id) of yours; list them with `gatehouse requests`")
            }
            let updated = try RequestLifecycle.cancel(request, by: caller.principal, isAdmin: caller.isAdmin, now: now)
            guard try await session.updateRequest(updated, from: request.state) else { throw AppErrors.raced(id) }
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: .requestCanceled, subject: id, resource: request.resource,
                                                      details: ["principal": request.requester])], at: now)
            return RequestView(request: updated, approvals: try await session.approvals(requestId: id))
        }
        await watch.changed(id)
        return view
    }

    /// Whether the caller may decide this request (the page shows the buttons only then).
    public func mayDecide(_ caller: Caller, _ request: AccessRequest) -> Bool {
        RequestPermissions.canDecide(caller.principal, request, policy: context.policies.policy)
    }

    /// The requester's latest requests, for an approver deciding one of them.
    /// A requester's recent requests, as far as `caller` may see them (an approver sees those on the
    /// resources they approve, not the requester's whole history).
    public func history(of requester: String, for caller: Caller, limit: Int) async throws -> [AccessRequest] {
        let policy = context.policies.policy
        let recent = try await context.read { try await $0.requests(.init(requester: requester, limit: limit * 5)) }
        return Array(recent.filter { RequestPermissions.canSee(caller.principal, isAdmin: caller.isAdmin, $0, policy: policy) }.prefix(limit))
    }

    // MARK: waiting for a decision

    public static let longestWait = TimeSpan(seconds: 60)

    /// The request once it is no longer waiting for a decision, or once an approval is recorded, or as it is after `wait`.
    /// `stopping`: the server is stopping; the poll answers with the request as it is (within the 2 s
    /// between looks), so a stop does not wait out every open poll and the client learns at once.
    public func waitForDecision(caller: Caller, id: String, wait: String, stopping: @Sendable () -> Bool = { false }) async throws -> RequestView {
        let span: TimeSpan
        do { span = try TimeSpan.parse(wait) } catch {
            throw GatehouseError.invalid("wait", "invalid_wait", "wait: \(error.description)")
        }
        guard span <= Self.longestWait else {
            throw GatehouseError.invalid("wait", "wait_too_long", "wait is \(span); at most \(Self.longestWait): poll again after it")
        }
        guard await watch.enter(token: caller.tokenId) else {
            var error = GatehouseError(.tooManyRequests, "too_many_waits", "this token already holds \(RequestWatch.pollsPerToken) waiting requests open; wait for one to answer")
            // A slot frees when one of them answers (at most `longestWait`); a client that honours Retry-After tries again soon.
            error.refusal = LimitRefusal(policy: "waits", message: error.message, retryAfterSeconds: 5)
            throw error
        }
        let deadline = ContinuousClock.now + .seconds(span.seconds)
        var approvalsSeen: Int?
        do {
            while true {
                // A token revoked (or a principal removed) while the poll waits ends it at the next look.
                try await context.requireLive(caller)
                let view = try await get(caller: caller, id: id)
                let left = deadline - ContinuousClock.now
                // An approval recorded meanwhile (not yet enough) answers too: the waiting client shows the progress.
                let progressed = approvalsSeen.map { $0 != view.approvals.count } ?? false
                approvalsSeen = view.approvals.count
                guard view.request.state == .pending || view.request.state == .quarantined, left > .zero, !Task.isCancelled, !stopping(),
                      !progressed else {
                    await watch.leave(token: caller.tokenId)
                    return view
                }
                // Woken at once by a decision here; another instance's decision is seen on the re-read.
                await watch.wait(for: id, atMost: min(left, .seconds(2)))
            }
        } catch {
            await watch.leave(token: caller.tokenId)
            throw error
        }
    }
}
