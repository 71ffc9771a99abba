import Foundation

/// The whole policy file, parsed and validated. Immutable: a reload builds a new one.
public struct Policy: Sendable {
    public var version: Int
    public var principals: [String: PrincipalEntry]
    public var resources: [String: Resource]
    /// Groups whose members are administrators (issue tokens, revoke grants, read the whole audit log).
    public var adminGroups: [String]
    public var pendingTTL: TimeSpan
    /// The `guard:` section: classifier categories moved between levels, shell rules added.
    public var guardSettings = GuardSettings()
    /// The `antispam:` section: hard limits, the spam score, cooldowns and notification budgets.
    public var antiSpam = AntiSpamPolicy()
    /// The `break_glass:` section: emergency access, announced and reviewed afterwards.
    public var breakGlass = BreakGlassPolicy()
    /// The `notifications:` section: webhook endpoints, digests and links to the web inbox.
    public var notifications = NotificationSettings()
    /// The `identity:` section: sign-in through an OpenID Connect provider.
    public var identity = IdentitySettings()

    public init(version: Int = 1, principals: [String: PrincipalEntry], resources: [String: Resource],
                adminGroups: [String] = [], pendingTTL: TimeSpan = TimeSpan(seconds: 86_400)) {
        self.version = version
        self.principals = principals
        self.resources = resources
        self.adminGroups = adminGroups
        self.pendingTTL = pendingTTL
    }

    /// All groups that have at least one member, or that people get from the identity provider.
    public var groups: Set<String> {
        Set(principals.values.flatMap(\.groups)).union(identity.oidc?.mappedGroups ?? [])
    }

    /// This policy with the people signed in through the identity provider added as principals
    /// (kind `user`), each with the groups of their newest live session on top of any the file gives.
    public func including(people: [String: [String]]) -> Policy {
        guard !people.isEmpty else { return self }
        var merged = self
        for (name, groups) in people {
            var entry = principals[name] ?? PrincipalEntry(groups: [])
            guard entry.kind == .user else { continue }
            for group in groups where !entry.groups.contains(group) { entry.groups.append(group) }
            merged.principals[name] = entry
        }
        return merged
    }

    public func members(of groups: [String]) -> Set<String> {
        let wanted = Set(groups)
        return Set(principals.filter { !wanted.isDisjoint(with: $0.value.groups) }.keys)
    }

    public func isMember(_ principal: String, ofAny groups: [String]) -> Bool {
        guard let entry = principals[principal] else { return false }
        return entry.groups.contains(where: groups.contains)
    }

    /// What a principal may ask for: per resource, the roles whose requesters include them, and whether
    /// they may ask for one-shot actions. Resources with neither are left out; sorted by name.
    public func requestable(by principal: String) -> [(resource: String, roles: [String], actions: Bool)] {
        resources.keys.sorted().compactMap { name in
            let resource = resources[name]!
            let roles = resource.roles.keys.sorted().filter { isMember(principal, ofAny: resource.roles[$0]!.requesters) }
            let actions = resource.actions.map { isMember(principal, ofAny: $0.requesters) } ?? false
            return roles.isEmpty && !actions ? nil : (name, roles, actions)
        }
    }

    public func isAdmin(_ principal: String) -> Bool {
        isMember(principal, ofAny: adminGroups)
    }

    /// Groups that review quarantined requests and hear about reports: `antispam.reviewers`, else
    /// the `security` group when there is one, else the admin groups.
    public var reviewerGroups: [String] {
        if !antiSpam.reviewers.isEmpty { return antiSpam.reviewers }
        return groups.contains("security") ? ["security"] : adminGroups
    }

    /// Reviewers release or reject quarantined requests; admins always can.
    public func isReviewer(_ principal: String) -> Bool {
        isAdmin(principal) || (principals[principal]?.kind == .user && isMember(principal, ofAny: reviewerGroups))
    }

    /// Humans who may approve requests for this role (service accounts never approve).
    public func eligibleApprovers(for role: Role) -> Set<String> {
        members(of: role.approvers).filter { principals[$0]?.kind == .user }
    }
}

public struct PrincipalEntry: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable { case user, service }
    public var groups: [String]
    public var kind: Kind

    public init(groups: [String], kind: Kind = .user) {
        self.groups = groups
        self.kind = kind
    }
}

public struct Resource: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case postgres, shell, http, generic }
    public var name: String
    public var kind: Kind
    public var labels: [String: String]
    public var roles: [String: Role]
    /// Who may ask approval for one exact action (`actions:` in the policy), as a role named `action`.
    public var actions: Role?
    /// How the guard proxy serves this resource (`proxy:`), for `kind: postgres`.
    public var proxy: ProxySettings?

    public init(name: String, kind: Kind, labels: [String: String] = [:], roles: [String: Role], actions: Role? = nil) {
        self.name = name
        self.kind = kind
        self.labels = labels
        self.roles = roles
        self.actions = actions
    }

    /// A role by name; `action` names the resource's one-shot action rule.
    public func role(named name: String) -> Role? {
        name == Role.actionRoleName ? actions : roles[name]
    }

    /// Whether actions of this kind can be run against this resource.
    public func accepts(_ kind: Action.Kind) -> Bool {
        switch self.kind {
        case .postgres: kind == .sql
        case .shell: kind == .shell
        case .http, .generic: true
        }
    }
}

public struct Role: Sendable, Equatable {
    /// The role name of one-shot action requests and their grants.
    public static let actionRoleName = "action"

    public var name: String
    public var requesters: [String]
    public var approvers: [String]
    public var approvals: Int
    public var maxDuration: TimeSpan
    public var allows: RiskLevel
    public var reason: ReasonRule

    public init(name: String, requesters: [String], approvers: [String] = [], approvals: Int,
                maxDuration: TimeSpan, allows: RiskLevel, reason: ReasonRule = ReasonRule()) {
        self.name = name
        self.requesters = requesters
        self.approvers = approvers
        self.approvals = approvals
        self.maxDuration = maxDuration
        self.allows = allows
        self.reason = reason
    }
}

/// What a request's reason must contain for a role.
public struct ReasonRule: Sendable, Equatable {
    public static let maximumLength = 4096
    public var minLength: Int
    /// Source of a regular expression that must be found in the ticket, or in the reason when no
    /// ticket is given.
    public var ticketPattern: String?

    public init(minLength: Int = 1, ticketPattern: String? = nil) {
        self.minLength = minLength
        self.ticketPattern = ticketPattern
    }

    public func matchesTicket(in text: String) -> Bool {
        guard let ticketPattern else { return true }
        guard let regex = try? NSRegularExpression(pattern: ticketPattern) else { return false }
        return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }
}
