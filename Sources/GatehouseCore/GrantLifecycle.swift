import Foundation

public enum GrantLifecycle {
    public static func release(_ grant: Grant, by principal: String, now: Date) throws(GatehouseError) -> Grant {
        guard principal == grant.principal else {
            throw GatehouseError(.forbidden, "not_your_grant", "only the holder can release grant \(grant.id); an admin can revoke it")
        }
        return try end(grant, as: .released, by: principal, comment: nil, now: now)
    }

    public static func revoke(_ grant: Grant, by principal: String, isAdmin: Bool, reason: String, now: Date) throws(GatehouseError) -> Grant {
        guard isAdmin else {
            throw GatehouseError(.forbidden, "admin_only", "only an admin can revoke a grant; the holder can release it")
        }
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty else {
            throw .invalid("reason", "missing_reason", "say why the grant is revoked (--reason)")
        }
        guard reason.utf8.count <= ReasonRule.maximumLength else {
            throw .unprocessable("reason", "reason_too_long", "the reason is longer than \(ReasonRule.maximumLength) bytes")
        }
        try TextRules.check(reason, field: "reason")
        return try end(grant, as: .revoked, by: principal, comment: reason, now: now)
    }

    static func end(_ grant: Grant, as reason: GrantEnd, by principal: String, comment: String?, now: Date) throws(GatehouseError) -> Grant {
        guard grant.isActive(at: now) else {
            throw GatehouseError(.conflict, "grant_not_active", "grant \(grant.id) is already \(grant.state(at: now)); nothing to end")
        }
        var updated = grant
        updated.endedAt = now
        updated.endReason = reason
        updated.endedBy = principal
        updated.endComment = comment
        return updated
    }

    /// A one-shot action grant is used up by the one check that allowed its action.
    public static func use(_ grant: Grant, now: Date) throws(GatehouseError) -> Grant {
        guard grant.actionDigest != nil else {
            throw GatehouseError(.conflict, "not_an_action_grant", "grant \(grant.id) is a role grant; only action grants are used up")
        }
        return try end(grant, as: .used, by: grant.principal, comment: nil, now: now)
    }

    public static func expire(_ grant: Grant) -> Grant {
        var updated = grant
        updated.endedAt = grant.expiresAt
        updated.endReason = .expired
        updated.endedBy = "system"
        return updated
    }
}

/// The answer to "may this principal act with this role on this resource now?".
public enum CheckDecision: Sendable, Equatable {
    case allow(Grant)
    case approvalRequired(command: String, reason: String)
    case deny(reason: String)
}

public enum AccessCheck {
    public static func decide(principal: String, resource resourceName: String, role roleName: String,
                              policy: Policy, grants: [Grant], now: Date) -> CheckDecision {
        guard policy.principals[principal] != nil else {
            return .deny(reason: "\(principal) is not a principal in the policy")
        }
        guard let resource = policy.resources[resourceName] else {
            return .deny(reason: "unknown resource '\(resourceName)'")
        }
        guard let role = resource.roles[roleName] else {
            return .deny(reason: "resource '\(resourceName)' has no role '\(roleName)'; its roles: \(resource.roles.keys.sorted().joined(separator: ", "))")
        }
        let grants = grants.filter { $0.actionDigest == nil }
        // A grant for a stronger role on the same resource covers a weaker one. A grant is honoured
        // only while its holder may still request its role: leaving the group ends it in effect.
        let covering = grants.filter { grant in
            guard grant.principal == principal, grant.resource == resourceName, grant.isActive(at: now),
                  grant.role == roleName || grant.allows > role.allows,
                  let grantedRole = resource.roles[grant.role] else { return false }
            return policy.mayHold(grant, role: grantedRole)
        }
        if let grant = covering.max(by: { $0.expiresAt < $1.expiresAt }) {
            return .allow(grant)
        }
        guard policy.isMember(principal, ofAny: role.requesters) else {
            return .deny(reason: "\(principal) may not request \(resourceName)/\(roleName): only members of \(role.requesters.joined(separator: ", ")) may")
        }
        let ticketHint = role.reason.ticketPattern.map { " (include a ticket matching \($0))" } ?? ""
        let command = "gatehouse request \(resourceName) --role \(roleName) --for \(role.maxDuration) --reason \"...\""
        return .approvalRequired(command: command, reason: "no active grant for \(resourceName)/\(roleName); request one\(ticketHint)")
    }
}
