import Foundation

/// The answer to "may this principal run this exact action on this resource now?".
public enum ActionDecision: Sendable, Equatable {
    /// Allowed by a role grant whose `allows` covers the action's risk.
    case allowByRole(Grant)
    /// Allowed by the one-shot grant for exactly this action, which the caller must mark used in the
    /// same transaction.
    case allowOnce(Grant)
    case approvalRequired(commands: [String], reason: String)
    case deny(reason: String)

    public var grant: Grant? {
        switch self {
        case let .allowByRole(grant), let .allowOnce(grant): grant
        default: nil
        }
    }
}

/// Which action checks are written to the audit log.
public enum ActionAuditScope: Sendable, Equatable {
    /// Dangerous and forbidden actions, and every use of a one-shot grant.
    case dangerous
    /// Those, and every action that was not allowed.
    case refusedAndDangerous
    /// Every action.
    case all

    public func audits(_ decision: ActionDecision) -> Bool {
        switch (self, decision) {
        case (.all, _): true
        case (.refusedAndDangerous, .approvalRequired), (.refusedAndDangerous, .deny): true
        default: false
        }
    }
}

public enum ActionCheck {
    public static func decide(principal: String, resource resourceName: String, action: Action,
                              classification: ActionClassification, policy: Policy, grants: [Grant], now: Date) -> ActionDecision {
        guard policy.principals[principal] != nil else {
            return .deny(reason: "\(principal) is not a principal in the policy")
        }
        guard let resource = policy.resources[resourceName] else {
            return .deny(reason: "unknown resource '\(resourceName)'")
        }
        guard resource.accepts(action.kind) else {
            return .deny(reason: "resource '\(resourceName)' is \(resource.kind.rawValue) and does not take \(action.kind.rawValue) actions")
        }
        let risk = classification.risk
        if risk == .forbidden {
            let categories = classification.findings.filter { $0.level == .forbidden }.map(\.category)
            return .deny(reason: "forbidden by policy (\(categories.joined(separator: ", "))): never allowed through Gatehouse")
        }
        let active = grants.filter { $0.principal == principal && $0.resource == resourceName && $0.isActive(at: now) }
        // A role grant allows actions up to its role's level (first: a one-shot approval is kept for when none does).
        let byRole = active.filter { grant in
            guard grant.actionDigest == nil, let role = resource.roles[grant.role] else { return false }
            return role.allows >= risk && policy.mayHold(grant, role: role)
        }
        if let grant = byRole.max(by: { $0.expiresAt < $1.expiresAt }) {
            return .allowByRole(grant)
        }
        // The exact action, approved once, while its holder may still ask for actions on this resource.
        let oneShot = active.filter { $0.actionDigest != nil }
        let digests = oneShot.isEmpty ? [] : action.approvalDigests
        if let actions = resource.actions, !oneShot.isEmpty, policy.isMember(principal, ofAny: actions.requesters),
           let grant = oneShot.filter({ $0.actionDigest.map(digests.contains) ?? false }).min(by: { $0.expiresAt < $1.expiresAt }) {
            return .allowOnce(grant)
        }
        var commands: [String] = []
        let roles = resource.roles.values
            .filter { $0.allows >= risk && policy.isMember(principal, ofAny: $0.requesters) }
            .sorted { ($0.allows, $0.approvals, $0.name) < ($1.allows, $1.approvals, $1.name) }
        if let role = roles.first {
            commands.append("gatehouse request \(resourceName) --role \(role.name) --for \(role.maxDuration) --reason \"...\"")
        }
        if let actions = resource.actions, policy.isMember(principal, ofAny: actions.requesters) {
            let flag = action.kind == .sql ? "--sql" : "--shell"
            commands.append("gatehouse request \(resourceName) \(flag) \(Shell.quote(action.text)) --reason \"...\"")
        }
        guard !commands.isEmpty else {
            return .deny(reason: "\(principal) may not ask for \(risk.rawValue) actions on \(resourceName): no role of it allows \(risk.rawValue) for them, and they may not request one-shot actions")
        }
        let categories = classification.findings.filter { $0.level == risk }.map(\.category)
        let why = categories.isEmpty ? "" : " (\(Set(categories).sorted().joined(separator: ", ")))"
        return .approvalRequired(commands: commands, reason: "this is a \(risk.rawValue) action\(why) and \(principal) has no active grant that allows it")
    }
}

public enum Shell {
    /// Quotes a text for a POSIX shell when it needs quoting.
    public static func quote(_ text: String) -> String {
        let safe = text.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,@%+".contains($0) }
        if safe, !text.isEmpty { return text }
        return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
