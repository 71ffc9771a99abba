import Foundation

/// What a request asks for: a role of the resource for a time, or approval of one exact action.
public enum RequestedAccess: Sendable, Equatable {
    case role(String)
    case action(Action)

    /// The name the request is stored and shown under (`action` for one-shot action requests).
    public var roleName: String {
        switch self {
        case .role(let name): name
        case .action: Role.actionRoleName
        }
    }
}

/// What a requester asks for, as typed: validated by `RequestLifecycle.open`.
public struct NewRequestInput: Sendable {
    public var resource: String
    public var access: RequestedAccess
    public var duration: String
    public var reason: String
    public var ticket: String?

    public init(resource: String, access: RequestedAccess, duration: String, reason: String, ticket: String? = nil) {
        self.resource = resource
        self.access = access
        self.duration = duration
        self.reason = reason
        self.ticket = ticket
    }

    /// A request for a role.
    public init(resource: String, role: String, duration: String, reason: String, ticket: String? = nil) {
        self.init(resource: resource, access: .role(role), duration: duration, reason: reason, ticket: ticket)
    }

    public var role: String { access.roleName }
}

/// The request and grant state machine. Pure: every function takes the current state, the policy
/// and the time, and returns the next state or a `GatehouseError`; the caller persists the result.
public enum RequestLifecycle {
    public static let maximumTicketLength = 128
    public static let maximumCommentLength = 4096

    /// A decision's or review's comment: at most `maximumCommentLength` bytes, and only text a
    /// reader sees as it is (TextRules).
    public static func checkComment(_ comment: String) throws(GatehouseError) {
        guard comment.utf8.count <= maximumCommentLength else {
            throw .unprocessable("comment", "comment_too_long", "the comment is longer than \(maximumCommentLength) bytes")
        }
        try TextRules.check(comment, field: "comment")
    }

    /// A comment as given: nil when it is absent or only white space.
    public static func trimmedComment(_ given: String?) -> String? {
        given.flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
    }

    /// A denial and a report carry a comment: the requester reads why they were denied, the
    /// reviewers why a request looked suspicious. Every way in (API, web, CLI, chat) meets this rule.
    public static func requiredComment(_ given: String?, for what: CommentedAct) throws(GatehouseError) -> String {
        guard let comment = trimmedComment(given) else {
            throw .invalid("comment", ErrorCode.missingComment, what.missingCommentMessage)
        }
        try checkComment(comment)
        return comment
    }

    /// The acts that must say why.
    public enum CommentedAct: Sendable {
        case deny, report

        var missingCommentMessage: String {
            switch self {
            case .deny: "say why you deny it (`comment`; `gatehouse deny ID --reason TEXT`): the requester sees your comment"
            case .report: "say what looks suspicious (`comment`): the reviewers read your comment"
            }
        }
    }

    /// `action` names the one-shot approvals of a resource, not a role anyone can hold.
    /// No such role (404, as for any other name that is not a role).
    static let actionRoleWithoutAction = GatehouseError(.notFound, "missing_action",
        "`\(Role.actionRoleName)` is not a role: a one-shot request names the exact action (\"action\": {\"kind\": \"sql\", \"text\": ...}, or --sql / --shell)", field: "role")

    public enum OpenOutcome: Sendable, Equatable {
        case pending(AccessRequest)
        /// `approvals: 0`: granted at once, still time-boxed and audited.
        case granted(AccessRequest, Grant)
    }

    public enum DecideOutcome: Sendable, Equatable {
        /// The approval counts but more are needed.
        case recorded(Approval, approvalsCounted: Int)
        case approved(Approval, AccessRequest, Grant)
        case denied(Approval, AccessRequest)
        /// The request's pending time ran out before this decision: it is expired instead.
        case expired(AccessRequest)
    }

    /// Looks up the resource and role, naming the known ones when the name is wrong.
    public static func role(_ resourceName: String, _ roleName: String, in policy: Policy) throws(GatehouseError) -> (Resource, Role) {
        guard let resource = policy.resources[resourceName] else {
            let known = policy.resources.keys.sorted().joined(separator: ", ")
            throw GatehouseError(.notFound, "unknown_resource", "unknown resource '\(resourceName)'; known resources: \(known)", field: "resource")
        }
        guard let role = resource.role(named: roleName) else {
            if roleName == Role.actionRoleName {
                throw GatehouseError(.notFound, "actions_not_enabled", "resource '\(resourceName)' takes no one-shot action requests; ask for a role (\(resource.roles.keys.sorted().joined(separator: ", "))) or add `actions:` to it in the policy", field: "action")
            }
            let known = resource.roles.keys.sorted().joined(separator: ", ")
            throw GatehouseError(.notFound, "unknown_role", "resource '\(resourceName)' has no role '\(roleName)'; its roles: \(known)", field: "role")
        }
        return (resource, role)
    }

    /// Validates a new request. An action request needs the action's `classification` (made by
    /// the guard when it was filed); a role request has none.
    public static func open(_ input: NewRequestInput, classification: ActionClassification? = nil, requester: String, policy: Policy,
                            now: Date, requestId: String, grantId: String) throws(GatehouseError) -> OpenOutcome {
        if case .role(Role.actionRoleName) = input.access { throw actionRoleWithoutAction }
        let (resource, role) = try role(input.resource, input.role, in: policy)
        var requested: RequestedAction?
        if case .action(let action) = input.access {
            guard let classification else {
                throw .invalid("action", "unclassified_action", "the action was not classified before it was filed; this is a bug in the caller, nothing was filed")
            }
            requested = try checkedAction(action, classification, resource: resource)
        }
        guard policy.isMember(requester, ofAny: role.requesters) else {
            throw GatehouseError(.forbidden, "not_a_requester",
                                 "\(requester) may not request \(input.resource)/\(input.role): only members of \(role.requesters.joined(separator: ", ")) may",
                                 field: "role")
        }
        let duration: TimeSpan
        do { duration = try TimeSpan.parse(input.duration) } catch {
            throw .invalid("duration", "invalid_duration", error.description)
        }
        guard duration <= role.maxDuration else {
            throw .unprocessable("duration", "duration_over_maximum",
                           "\(duration) is longer than the maximum of \(role.maxDuration) for \(input.resource)/\(input.role); ask for \(role.maxDuration) or less")
        }
        let reason = input.reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty else {
            throw .invalid("reason", "missing_reason", "a reason is required: say why you need this access (for example the incident or change ticket)")
        }
        try TextRules.check(reason, field: "reason")
        guard reason.utf8.count <= ReasonRule.maximumLength else {
            throw .unprocessable("reason", "reason_too_long", "the reason is \(reason.utf8.count) bytes; the maximum is \(ReasonRule.maximumLength) bytes (4 KiB)")
        }
        guard reason.count >= role.reason.minLength else {
            throw .unprocessable("reason", "reason_too_short", "the reason must be at least \(role.reason.minLength) characters for \(input.resource)/\(input.role); say what you will do and why")
        }
        let ticket = input.ticket?.trimmingCharacters(in: .whitespacesAndNewlines)
        let givenTicket = (ticket?.isEmpty ?? true) ? nil : ticket
        if let givenTicket {
            guard givenTicket.utf8.count <= maximumTicketLength else {
                throw .unprocessable("ticket", "ticket_too_long", "the ticket is longer than \(maximumTicketLength) bytes; give just its identifier")
            }
            try TextRules.check(givenTicket, field: "ticket")
        }
        if let pattern = role.reason.ticketPattern, !role.reason.matchesTicket(in: givenTicket ?? reason) {
            throw .unprocessable(givenTicket == nil ? "reason" : "ticket", "ticket_required",
                           "\(input.resource)/\(input.role) needs a ticket matching \(pattern) in --ticket or in the reason")
        }
        var request = AccessRequest(
            id: requestId, requester: requester, resource: input.resource, role: input.role, duration: duration,
            reason: reason, ticket: givenTicket, state: .pending, approvalsRequired: role.approvals,
            createdAt: now, pendingExpiresAt: now.addingTimeInterval(TimeInterval(policy.pendingTTL.seconds)),
            action: requested)
        guard role.approvals > 0 else {
            request.state = .approved
            request.decidedAt = now
            request.decidedBy = "policy"
            request.stateReason = "granted without approval by policy (approvals: 0)"
            request.grantId = grantId
            return .granted(request, makeGrant(grantId, for: request, allows: role.allows, at: now))
        }
        return .pending(request)
    }

    static func checkedAction(_ action: Action, _ classification: ActionClassification, resource: Resource) throws(GatehouseError) -> RequestedAction {
        if let problem = action.problem { throw .invalid("action", "invalid_action", problem) }
        guard resource.accepts(action.kind) else {
            throw .unprocessable("action", "wrong_action_kind", "resource '\(resource.name)' is \(resource.kind.rawValue); it takes \(resource.kind == .postgres ? "--sql" : "--shell") actions, not \(action.kind.rawValue)")
        }
        guard classification.risk != .forbidden else {
            let categories = classification.findings.filter { $0.level == .forbidden }.map(\.category)
            throw GatehouseError(.forbidden, "forbidden_action", "this action is forbidden by policy (\(categories.joined(separator: ", "))); forbidden actions are never allowed through Gatehouse, whoever approves", field: "action")
        }
        return RequestedAction(action, classification: classification)
    }

    /// One approver's decision. Eligibility of both the approver and the requester is judged against
    /// the policy as it is now, and earlier approvals only count while their approver is still eligible.
    /// `discounted`: earlier approvers who have lost their standing since (blocked, or the token they
    /// approved with was revoked by someone else): their approvals no longer count.
    public static func decide(_ request: AccessRequest, existing: [Approval], approver: String, decision: ApprovalDecision,
                              comment given: String?, policy: Policy, now: Date, grantId: String,
                              discounted: Set<String> = []) throws(GatehouseError) -> DecideOutcome {
        let comment = trimmedComment(given)
        if let comment { try checkComment(comment) }
        // Who may decide comes before what state the request is in: a non-approver is told so, not
        // whether the request was decided.
        guard approver != request.requester else {
            throw GatehouseError(.forbidden, "self_approval", "you cannot \(decision.rawValue) your own request; ask an approver, or cancel it with `gatehouse cancel \(request.id)`")
        }
        if let role = policy.resources[request.resource]?.role(named: request.role), !policy.eligibleApprovers(for: role).contains(approver) {
            throw GatehouseError(.forbidden, "not_an_approver", "\(approver) is not an approver for \(request.resource)/\(request.role); approvers are human members of \(role.approvers.joined(separator: ", "))")
        }
        guard request.state != .quarantined else {
            throw GatehouseError(.conflict, "quarantined", "request \(request.id) is held by the anti-spam policy; a reviewer must release it (`gatehouse review \(request.id) release`) before it can be decided")
        }
        guard request.state == .pending else {
            throw GatehouseError(.conflict, "already_decided", "request \(request.id) is \(request.state.rawValue); a request that is no longer pending cannot be decided again")
        }
        if now >= request.pendingExpiresAt {
            return .expired(expire(request, now: now))
        }
        guard approver != request.requester else {
            throw GatehouseError(.forbidden, "self_approval", "you cannot \(decision.rawValue) your own request; ask an approver, or cancel it with `gatehouse cancel \(request.id)`")
        }
        let resourceRole: (Resource, Role)
        do { resourceRole = try role(request.resource, request.role, in: policy) } catch {
            throw GatehouseError(.conflict, "role_removed", "\(request.resource)/\(request.role) is no longer in the policy; this request cannot be decided")
        }
        let role = resourceRole.1
        let eligible = policy.eligibleApprovers(for: role)
        guard eligible.contains(approver) else {
            throw GatehouseError(.forbidden, "not_an_approver", "\(approver) is not an approver for \(request.resource)/\(request.role); approvers are human members of \(role.approvers.joined(separator: ", "))")
        }
        // An earlier approval of theirs that no longer counts (its token revoked by someone else) may be
        // replaced by this decision; one that counts may not, except to approve again a request its approvals
        // now complete (approvals that stopped counting while their approvers left the policy count again once
        // they are back: the request is then approved by the next of them to approve, without a second row).
        let earlier = existing.first { $0.approver == approver && !discounted.contains(approver) }
        let alreadyDecided = GatehouseError(.conflict, "already_decided_by_you", "you already decided request \(request.id); one person counts once")
        if let earlier, !(decision == .approve && earlier.decision == .approve) { throw alreadyDecided }
        if decision == .deny { _ = try requiredComment(comment, for: .deny) }
        let approval = earlier ?? Approval(requestId: request.id, approver: approver, decision: decision, comment: comment, at: now)
        var updated = request
        if decision == .deny {
            updated.state = .denied
            updated.decidedAt = now
            updated.decidedBy = approver
            updated.stateReason = comment
            return .denied(approval, updated)
        }
        guard policy.isMember(request.requester, ofAny: role.requesters) else {
            throw GatehouseError(.conflict, "requester_ineligible", "\(request.requester) is no longer allowed to request \(request.resource)/\(request.role); this request cannot be approved, deny it instead")
        }
        let approvers = Set(existing.filter { $0.decision == .approve && eligible.contains($0.approver) && $0.approver != request.requester
                                              && $0.approver != approver && !discounted.contains($0.approver) }.map(\.approver))
            .union([approver])
        guard request.duration <= role.maxDuration else {
            throw GatehouseError(.conflict, "duration_over_maximum",
                                 "\(request.resource)/\(request.role) now allows at most \(role.maxDuration) but this request asks for \(request.duration); deny it and ask the requester to file a new one")
        }
        let needed = max(request.approvalsRequired, role.approvals)
        guard approvers.count >= needed else {
            if earlier != nil { throw alreadyDecided }
            return .recorded(approval, approvalsCounted: approvers.count)
        }
        updated.state = .approved
        updated.decidedAt = now
        updated.decidedBy = approver
        updated.stateReason = comment
        updated.grantId = grantId
        return .approved(approval, updated, makeGrant(grantId, for: updated, allows: role.allows, at: now))
    }

    /// Applies the spam score's action to a request that passed validation: throttled requests are
    /// filed as usual (the caller holds back notifications); extra approval asks one more approver
    /// (an `approvals: 0` role then needs one), or quarantines when not enough people could give
    /// it; quarantine and block hold the request for the reviewers.
    /// What the requester reads on a held request: the score and its signals are for reviewers only.
    public static let heldReason = "held for review by the anti-spam policy"

    public static func applySpam(_ verdict: SpamVerdict, to outcome: OpenOutcome, policy: Policy) -> OpenOutcome {
        var request: AccessRequest
        switch outcome {
        case .pending(let pending): request = pending
        case .granted(let granted, _): request = granted
        }
        request.spam = verdict
        func held(_ why: String) -> OpenOutcome {
            var held = request
            held.state = .quarantined
            held.decidedAt = nil
            held.decidedBy = nil
            held.grantId = nil
            held.stateReason = why
            return .pending(held)
        }
        switch verdict.action {
        case .allow, .throttle:
            if case .granted(_, let grant) = outcome { return .granted(request, grant) }
            return .pending(request)
        case .extraApproval:
            let needed = request.approvalsRequired + 1
            let role = policy.resources[request.resource]?.role(named: request.role)
            let possible = role.map { policy.eligibleApprovers(for: $0).subtracting([request.requester]).count } ?? 0
            guard possible >= needed else {
                return held(heldReason)
            }
            request.approvalsRequired = needed
            request.state = .pending
            request.decidedAt = nil
            request.decidedBy = nil
            request.grantId = nil
            request.stateReason = "one more approval required by the anti-spam policy"
            return .pending(request)
        case .quarantine, .block:
            return held(heldReason)
        }
    }

    /// A reviewer releases a quarantined request to its approvers (with a fresh pending time) or rejects it.
    public static func review(_ request: AccessRequest, release: Bool, by reviewer: String, comment: String?, policy: Policy,
                              now: Date) throws(GatehouseError) -> AccessRequest {
        if let comment { try checkComment(comment) }
        guard policy.isReviewer(reviewer) else {
            throw GatehouseError(.forbidden, "not_a_reviewer", "only reviewers (\(policy.reviewerGroups.joined(separator: ", ")), or admins) can review quarantined requests")
        }
        guard request.state == .quarantined else {
            throw GatehouseError(.conflict, "not_quarantined", "request \(request.id) is \(request.state.rawValue); only quarantined requests are reviewed")
        }
        guard reviewer != request.requester else {
            throw GatehouseError(.forbidden, "self_review", "you cannot review your own request")
        }
        guard now < request.pendingExpiresAt else {
            throw GatehouseError(.conflict, "request_expired", "request \(request.id) expired at \(request.pendingExpiresAt.rfc3339) before it was reviewed; the requester must file a new one")
        }
        var updated = request
        if release {
            updated.state = .pending
            updated.pendingExpiresAt = now.addingTimeInterval(TimeInterval(policy.pendingTTL.seconds))
            updated.stateReason = "released by \(reviewer)" + (comment.map { ": \($0)" } ?? "")
        } else {
            updated.state = .denied
            updated.decidedAt = now
            updated.decidedBy = reviewer
            updated.stateReason = comment ?? "rejected after anti-spam review"
        }
        return updated
    }

    /// A blocked or reported requester's open requests are held for the reviewers, who get a full
    /// pending time from now to look at them.
    public static func quarantine(_ request: AccessRequest, why: String, policy: Policy, now: Date) -> AccessRequest? {
        guard request.state == .pending else { return nil }
        var updated = request
        updated.state = .quarantined
        updated.stateReason = why
        updated.pendingExpiresAt = max(request.pendingExpiresAt, now.addingTimeInterval(TimeInterval(policy.pendingTTL.seconds)))
        return updated
    }

    public static func cancel(_ request: AccessRequest, by principal: String, isAdmin: Bool, now: Date) throws(GatehouseError) -> AccessRequest {
        guard principal == request.requester || isAdmin else {
            throw GatehouseError(.forbidden, "not_your_request", "only the requester or an admin can cancel request \(request.id)")
        }
        guard request.state == .pending || request.state == .quarantined else {
            throw GatehouseError(.conflict, "already_decided", "request \(request.id) is \(request.state.rawValue); only a pending request can be canceled\(request.state == .approved ? " (release its grant instead)" : "")")
        }
        var updated = request
        updated.state = .canceled
        updated.decidedAt = now
        updated.decidedBy = principal
        return updated
    }

    public static func expire(_ request: AccessRequest, now: Date) -> AccessRequest {
        var updated = request
        updated.state = .expired
        updated.decidedAt = now
        updated.decidedBy = "system"
        updated.stateReason = "nobody decided within the pending time"
        return updated
    }

    /// The grant starts when the request is approved, never when it was filed.
    static func makeGrant(_ id: String, for request: AccessRequest, allows: RiskLevel, at now: Date) -> Grant {
        Grant(id: id, requestId: request.id, principal: request.requester, resource: request.resource, role: request.role,
              allows: request.action?.risk ?? allows, startsAt: now,
              expiresAt: now.addingTimeInterval(TimeInterval(request.duration.seconds)), actionDigest: request.action?.digest)
    }
}
