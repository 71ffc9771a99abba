import Foundation

/// The `break_glass:` section: emergency access granted at once, time-boxed, announced to
/// everyone in `notify` and reviewed afterwards.
public struct BreakGlassPolicy: Sendable, Equatable {
    public var enabled = false
    /// The longest a break-glass grant lasts, whatever the role allows normally.
    public var maxDuration = TimeSpan(seconds: 15 * 60)
    /// How often one principal may break the glass (GCRA, shared by every instance).
    public var rate: RateLimit? = RateLimit(count: 1, period: TimeSpan(seconds: 86_400), burst: 1)
    /// Groups whose members may break the glass; empty: whoever may request the role normally.
    public var requesters: [String] = []
    /// Groups told at once, outside every notification budget.
    public var notify: [String] = []
    /// Whether each use waits for a post-incident review (an approver marks it reviewed).
    public var reviewRequired = true

    public init() {}
}

public enum BreakGlass {
    public static let minimumReasonLength = 10

    /// Opens a break-glass grant: the request is approved by `break-glass` at once, for at most
    /// `break_glass.max_duration`. The usual request checks apply (known resource and role, reason
    /// rules, text rules) except approvals and tickets: in an emergency nobody waits for either.
    public static func open(_ input: NewRequestInput, requester: String, policy: Policy, now: Date,
                            requestId: String, grantId: String) throws(GatehouseError) -> (AccessRequest, Grant) {
        let settings = policy.breakGlass
        guard settings.enabled else {
            throw GatehouseError(.forbidden, "break_glass_disabled", "break-glass access is not enabled in the policy (`break_glass: {enabled: true}`); file a normal request instead")
        }
        guard case .role(let name) = input.access, name != Role.actionRoleName else {
            throw GatehouseError(.notFound, "break_glass_role", "break-glass grants a role, not one exact action; name a role with --role", field: "role")
        }
        let (resource, role) = try RequestLifecycle.role(input.resource, input.role, in: policy)
        if let principal = policy.principals[requester], principal.kind != .user {
            throw GatehouseError(.forbidden, "not_allowed_break_glass",
                                 "\(requester) is a service account, and break-glass is for people in an emergency; automation files a normal request",
                                 field: "role")
        }
        guard policy.mayBreakGlass(requester, role: role) else {
            let groups = settings.requesters.isEmpty || Set(settings.requesters) == Set(role.requesters) ? role.requesters.joined(separator: ", ")
                : "\(role.requesters.joined(separator: ", ")) who are also in \(settings.requesters.joined(separator: ", "))"
            throw GatehouseError(.forbidden, "not_allowed_break_glass",
                                 "\(requester) may not break the glass for \(resource.name)/\(role.name): only people in \(groups) may; file a normal request instead",
                                 field: "role")
        }
        var emergencyRole = role
        emergencyRole.approvals = 0
        emergencyRole.maxDuration = settings.maxDuration
        emergencyRole.reason = ReasonRule(minLength: max(role.reason.minLength, minimumReasonLength), ticketPattern: nil)
        var emergency = policy
        emergency.resources[resource.name]?.roles[role.name] = emergencyRole
        var given = input
        if given.duration.isEmpty { given.duration = settings.maxDuration.description }
        guard case .granted(var request, var grant) = try RequestLifecycle.open(given, requester: requester, policy: emergency, now: now,
                                                                               requestId: requestId, grantId: grantId) else {
            throw GatehouseError(.conflict, "break_glass_not_granted", "break-glass did not produce a grant; nothing was stored")
        }
        request.decidedBy = "break-glass"
        request.stateReason = "break-glass access, granted without approval; a review follows"
        grant.breakGlass = true
        return (request, grant)
    }

    /// Marks a break-glass use reviewed. The holder never reviews their own use.
    public static func review(_ use: BreakGlassUse, reviewer: String, comment: String, policy: Policy, now: Date) throws(GatehouseError) -> BreakGlassUse {
        guard reviewer != use.principal else {
            throw GatehouseError(.forbidden, "self_review", "you used this break-glass grant; someone else must review it")
        }
        guard policy.isBreakGlassReviewer(reviewer, resource: use.resource) else {
            throw GatehouseError(.notFound, "break_glass_not_found", "no break-glass use \(use.grantId) that you can review; admins, those told about break-glass uses and approvers of \(use.resource) review them")
        }
        guard use.reviewedAt == nil else {
            throw GatehouseError(.conflict, "already_reviewed", "break-glass use \(use.grantId) was reviewed by \(use.reviewedBy ?? "someone") already")
        }
        let comment = comment.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !comment.isEmpty else {
            throw .invalid("comment", "missing_comment", "a review needs a comment: what was done with the access and whether it was justified")
        }
        try RequestLifecycle.checkComment(comment)
        var reviewed = use
        reviewed.reviewedAt = now
        reviewed.reviewedBy = reviewer
        reviewed.reviewComment = comment
        return reviewed
    }
}

/// One use of break-glass access and its post-incident review.
public struct BreakGlassUse: Sendable, Equatable {
    public var grantId: String
    public var requestId: String
    public var principal: String
    public var resource: String
    public var role: String
    public var reason: String
    public var at: Date
    public var expiresAt: Date
    public var reviewRequired: Bool
    public var reviewedAt: Date?
    public var reviewedBy: String?
    public var reviewComment: String?

    public init(grantId: String, requestId: String, principal: String, resource: String, role: String, reason: String, at: Date,
                expiresAt: Date, reviewRequired: Bool, reviewedAt: Date? = nil, reviewedBy: String? = nil, reviewComment: String? = nil) {
        self.grantId = grantId
        self.requestId = requestId
        self.principal = principal
        self.resource = resource
        self.role = role
        self.reason = reason
        self.at = at
        self.expiresAt = expiresAt
        self.reviewRequired = reviewRequired
        self.reviewedAt = reviewedAt
        self.reviewedBy = reviewedBy
        self.reviewComment = reviewComment
    }

    public var awaitsReview: Bool { reviewRequired && reviewedAt == nil }
}

extension Policy {
    /// Whether a principal may break the glass for a role: a human who may request the role and,
    /// when `break_glass.requesters` is set, is also in one of those groups. Break-glass skips the
    /// approval, never who may hold the role.
    public func mayBreakGlass(_ principal: String, role: Role) -> Bool {
        guard principals[principal]?.kind == .user, isMember(principal, ofAny: role.requesters) else { return false }
        return breakGlass.requesters.isEmpty || isMember(principal, ofAny: breakGlass.requesters)
    }

    /// Whether a grant is still honoured for its holder: while they may still request its role,
    /// or, for a break-glass grant, while they may still break the glass for it.
    public func mayHold(_ grant: Grant, role: Role) -> Bool {
        grant.breakGlass ? mayBreakGlass(grant.principal, role: role) : isMember(grant.principal, ofAny: role.requesters)
    }

    /// Humans told about break-glass uses: members of `break_glass.notify`, else the reviewer groups.
    public var breakGlassRecipients: [String] {
        let groups = breakGlass.notify.isEmpty ? reviewerGroups : breakGlass.notify
        return members(of: groups).filter { principals[$0]?.kind == .user }.sorted()
    }

    /// Admins, whoever is told about break-glass uses, and the approvers of the resource's roles.
    public func isBreakGlassReviewer(_ principal: String, resource: String) -> Bool {
        if isAdmin(principal) { return true }
        guard principals[principal]?.kind == .user else { return false }
        if breakGlassRecipients.contains(principal) { return true }
        guard let resource = resources[resource] else { return false }
        return resource.roles.values.contains { eligibleApprovers(for: $0).contains(principal) }
    }
}
