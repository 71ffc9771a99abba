import Foundation

/// Who may do what with a request. One predicate, used alike to list requests, to enforce a
/// decision, and to show or hide buttons on the request page, so the three cannot disagree.
/// The state rules (pending, quarantined, expired) stay in `RequestLifecycle`; this answers only
/// "is this person someone who may".
public enum RequestPermissions {
    /// A human member of one of the request's role's approver groups (service accounts never approve).
    public static func isApprover(_ principal: String, of request: AccessRequest, policy: Policy) -> Bool {
        guard let role = policy.resources[request.resource]?.role(named: request.role) else { return false }
        return policy.eligibleApprovers(for: role).contains(principal)
    }

    /// May decide the request: an eligible approver who is not its requester.
    public static func canDecide(_ principal: String, _ request: AccessRequest, policy: Policy) -> Bool {
        principal != request.requester && isApprover(principal, of: request, policy: policy)
    }

    /// May see the request: an admin, its requester, an approver of its role, and a reviewer while it is held.
    public static func canSee(_ principal: String, isAdmin: Bool, _ request: AccessRequest, policy: Policy) -> Bool {
        isAdmin || request.requester == principal
            || (request.state == .quarantined && policy.isReviewer(principal))
            || isApprover(principal, of: request, policy: policy)
    }

    /// May cancel the request: its requester or an admin.
    public static func canCancel(_ principal: String, isAdmin: Bool, _ request: AccessRequest) -> Bool {
        isAdmin || request.requester == principal
    }

    /// May look at the request to report it: an admin, a reviewer, an approver of its role, or its
    /// requester (who is then told that nobody reports their own request).
    public static func canReachForReport(_ principal: String, isAdmin: Bool, _ request: AccessRequest, policy: Policy) -> Bool {
        isAdmin || policy.isReviewer(principal) || request.requester == principal || isApprover(principal, of: request, policy: policy)
    }

    /// May look at the request to review it: an admin (the bootstrap admin too), a reviewer, or its
    /// requester (who is then refused).
    public static func canReachForReview(_ principal: String, isAdmin: Bool, _ request: AccessRequest, policy: Policy) -> Bool {
        isAdmin || policy.isReviewer(principal) || request.requester == principal
    }

    /// May see a request's spam score and signals: everyone who may see the request but its requester
    /// (admins always): nothing to tune a flood against.
    public static func canSeeSpamScore(_ principal: String, isAdmin: Bool, _ request: AccessRequest) -> Bool {
        isAdmin || request.requester != principal
    }

    /// May see requests held for review in a listing: reviewers and admins only (approvers are not told
    /// about held requests, nor their reasons).
    public static func canSeeHeld(_ principal: String, isAdmin: Bool, policy: Policy) -> Bool {
        isAdmin || policy.isReviewer(principal)
    }

    /// The resources on which the principal approves at least one role: where to look for work.
    /// The roles the principal approves, by resource (`action` for a resource's one-shot actions): a
    /// listing of what waits for them asks for these and nothing else, so nothing they may not see reaches it.
    public static func approvableRoles(_ principal: String, policy: Policy) -> [String: [String]] {
        var roles: [String: [String]] = [:]
        for resource in policy.resources.values {
            var names = resource.roles.values.filter { policy.eligibleApprovers(for: $0).contains(principal) }.map(\.name)
            if let actions = resource.actions, policy.eligibleApprovers(for: actions).contains(principal) { names.append(Role.actionRoleName) }
            if !names.isEmpty { roles[resource.name] = names.sorted() }
        }
        return roles
    }

    public static func approvableResources(_ principal: String, policy: Policy) -> [String] {
        policy.resources.values.filter { resource in
            (Array(resource.roles.values) + (resource.actions.map { [$0] } ?? [])).contains { policy.eligibleApprovers(for: $0).contains(principal) }
        }.map(\.name)
    }
}

/// What a report may reach. Reporting blocks a person and takes their access away, so an approver's
/// report is about a request in front of them now, and takes away only what they could have refused.
public enum ReportScope {
    /// A decided request can be reported for this long after its decision.
    public static let recentlyDecided: TimeInterval = 24 * 3600

    /// Whether the request can still be reported: waiting (pending or held), or decided within the
    /// last day. Admins may report any request.
    public static func isReportable(_ request: AccessRequest, isAdmin: Bool, now: Date) -> Bool {
        if isAdmin { return true }
        switch request.state {
        case .pending, .quarantined: return true
        default: return request.decidedAt.map { now.timeIntervalSince($0) <= recentlyDecided } ?? false
        }
    }

    /// Whether a report revokes this grant at once: admins and reviewers revoke every grant; an
    /// approver only grants on resources they approve for. The others stay, unusable while the
    /// requester is blocked, for a reviewer to revoke or keep.
    public static func revokes(_ grant: Grant, reporter: String, isAdmin: Bool, policy: Policy) -> Bool {
        isAdmin || policy.isReviewer(reporter) || RequestPermissions.approvableResources(reporter, policy: policy).contains(grant.resource)
    }
}
