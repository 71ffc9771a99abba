// Over 400 lines on purpose: the one YAML reader every policy section goes through, so that every
// problem carries its line and column the same way. Sections with much to say have files of their
// own (PolicyLoader+AntiSpam, +BreakGlass, +Notifications).
import Foundation
import Yams

/// One thing wrong (or worth knowing) about a policy file, with where it is.
public struct PolicyProblem: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }
    public var line: Int
    public var column: Int
    public var severity: Severity
    public var message: String

    public init(line: Int, column: Int, severity: Severity = .error, message: String) {
        self.line = line
        self.column = column
        self.severity = severity
        self.message = message
    }

    public var description: String { "\(line):\(column): \(severity.rawValue): \(message)" }

    public func located(in file: String) -> String { "\(file):\(description)" }
}

/// The result of reading a policy file: a policy only when there are no errors.
public struct PolicyLoadResult: Sendable {
    public var policy: Policy?
    public var problems: [PolicyProblem]
    public var errors: [PolicyProblem] { problems.filter { $0.severity == .error } }
    public var warnings: [PolicyProblem] { problems.filter { $0.severity == .warning } }
}

public struct PolicyError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var problems: [PolicyProblem]

    public init(file: String, problems: [PolicyProblem]) {
        self.file = file
        self.problems = problems
    }

    public var description: String {
        (["policy \(file) is invalid:"] + problems.map { "  " + $0.located(in: file) }).joined(separator: "\n")
    }
}

/// Reads and validates the YAML policy file. Every problem found is reported with its line and
/// column and what to write instead; reading does not stop at the first one.
public enum PolicyLoader {
    /// Whether `name` is a valid principal, group, resource or role name: `[a-z0-9][a-z0-9._-]{0,62}`,
    /// the whole string (a final line break is not allowed either). Every check runs it, so it reads
    /// bytes rather than running a regular expression.
    public static func isValidName(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { bytes in
            guard (1...63).contains(bytes.count) else { return false }
            for (index, byte) in bytes.enumerated() {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): continue
                case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                    if index == 0 { return false }
                default: return false
                }
            }
            return true
        }
    }

    /// What `isValidName` accepts, in words, for error messages.
    public static let nameRule = "names are lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 63 characters"
    /// Names Gatehouse uses for itself: the bootstrap admin and the actors of automatic events.
    /// Every name Gatehouse writes as an actor in the audit log, or uses for itself: a principal of the same
    /// name could not be told apart from it.
    public static let reservedPrincipals: Set<String> = ["admin", "system", "policy", "gatehouse", "antispam", "break-glass"]

    public static func load(file path: String) throws -> PolicyLoadResult {
        let text: String
        do {
            text = try TextFile.read(path)
        } catch {
            return PolicyLoadResult(policy: nil, problems: [PolicyProblem(line: 1, column: 1, message: "cannot read the policy file: \(error.why); check the path and its permissions")])
        }
        return load(yaml: text)
    }

    /// Loads a file and returns the policy or throws an error listing every problem.
    public static func loadValid(file path: String) throws -> Policy {
        let result = try load(file: path)
        guard let policy = result.policy else { throw PolicyError(file: path, problems: result.errors) }
        return policy
    }

    public static func load(yaml text: String) -> PolicyLoadResult {
        var reader = Reader()
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            return PolicyLoadResult(policy: nil, problems: [problem(from: error)])
        } catch {
            return PolicyLoadResult(policy: nil, problems: [PolicyProblem(line: 1, column: 1, message: "not valid YAML: \(error)")])
        }
        guard let root, root.mapping != nil else {
            return PolicyLoadResult(policy: nil, problems: [PolicyProblem(line: 1, column: 1, message: "the policy must be a YAML mapping with at least `version: 1`, `principals:` and `resources:`")])
        }
        let policy = reader.policy(root)
        let problems = reader.problems.sorted { ($0.line, $0.column) < ($1.line, $1.column) }
        return PolicyLoadResult(policy: reader.hasErrors ? nil : policy, problems: problems)
    }

    static func problem(from error: YamlError) -> PolicyProblem {
        switch error {
        case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
            return PolicyProblem(line: mark.line, column: mark.column, message: "not valid YAML: \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            return PolicyProblem(line: context.mark.line, column: context.mark.column,
                                 message: "key \(duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")) appears twice in the same mapping; keep one")
        default:
            return PolicyProblem(line: 1, column: 1, message: "not valid YAML: \(error)")
        }
    }

    struct Reader {
        var problems: [PolicyProblem] = []
        var hasErrors: Bool { problems.contains { $0.severity == .error } }

        mutating func error(_ node: Node?, _ message: String) {
            let mark = node?.mark
            problems.append(PolicyProblem(line: mark?.line ?? 1, column: mark?.column ?? 1, message: message))
        }

        mutating func warning(_ node: Node?, _ message: String) {
            let mark = node?.mark
            problems.append(PolicyProblem(line: mark?.line ?? 1, column: mark?.column ?? 1, severity: .warning, message: message))
        }

        /// The entries of a mapping as (key text, key node, value node); reports non-mappings and unknown keys.
        mutating func entries(_ node: Node, _ what: String, allowed: [String]? = nil) -> [(String, Node, Node)] {
            guard let mapping = node.mapping else {
                error(node, "\(what) must be a mapping (`key: value` lines)")
                return []
            }
            var out: [(String, Node, Node)] = []
            for (key, value) in mapping {
                guard let name = key.scalar?.string else {
                    error(key, "keys in \(what) must be plain names")
                    continue
                }
                if let allowed, !allowed.contains(name) {
                    let hint = PolicyLoader.closest(to: name, in: allowed).map { "did you mean `\($0)`? " } ?? ""
                    error(key, "unknown key `\(name)` in \(what); \(hint)known keys: \(allowed.joined(separator: ", "))")
                    continue
                }
                out.append((name, key, value))
            }
            return out
        }

        mutating func string(_ node: Node, _ what: String) -> String? {
            guard let scalar = node.scalar, !scalar.string.isEmpty else {
                error(node, "\(what) must be a non-empty text value")
                return nil
            }
            return scalar.string
        }

        mutating func int(_ node: Node, _ what: String, min: Int, max: Int) -> Int? {
            guard let scalar = node.scalar, let value = Int(scalar.string) else {
                error(node, "\(what) must be a whole number between \(min) and \(max)")
                return nil
            }
            guard value >= min, value <= max else {
                error(node, "\(what) is \(value); it must be between \(min) and \(max)")
                return nil
            }
            return value
        }

        mutating func duration(_ node: Node, _ what: String) -> TimeSpan? {
            guard let scalar = node.scalar else {
                error(node, "\(what) must be a duration like 30m, 1h30m or 7d")
                return nil
            }
            do { return try TimeSpan.parse(scalar.string) } catch {
                self.error(node, "\(what): \(error.description)")
                return nil
            }
        }

        mutating func stringList(_ node: Node, _ what: String) -> [(String, Node)] {
            if let scalar = node.scalar {
                error(node, "\(what) must be a list, for example [\(scalar.string)]")
                return []
            }
            guard let sequence = node.sequence else {
                error(node, "\(what) must be a list of names, for example [engineers]")
                return []
            }
            return sequence.compactMap { item in string(item, "each entry of \(what)").map { ($0, item) } }
        }

        mutating func checkName(_ name: String, _ node: Node, _ what: String) {
            if !PolicyLoader.isValidName(name) {
                error(node, "\(what) `\(name)` is not a valid name; use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit (at most 63 characters)")
            }
        }

        mutating func policy(_ root: Node) -> Policy {
            var version: Int?
            var principals: [String: PrincipalEntry] = [:]
            var resourceNodes: [(String, Node, Node)] = []
            var adminNodes: [(String, Node)] = []
            var pendingTTL = TimeSpan(seconds: 86_400)
            var guardSettings = GuardSettings()
            var antiSpamNode: Node?
            var breakGlassNode: Node?
            var notificationsNode: Node?
            var identity = IdentitySettings()
            let known = ["version", "principals", "resources", "admins", "pending_ttl", "guard", "antispam", "break_glass", "notifications", "identity"]
            var sawPrincipals = false, sawResources = false
            for (key, keyNode, value) in entries(root, "the policy", allowed: known) {
                switch key {
                case "version":
                    if value.scalar?.string == "1" { version = 1 } else {
                        error(value, "version must be 1 (the policy format this Gatehouse reads)")
                    }
                case "principals":
                    sawPrincipals = true
                    principals = self.principals(value)
                case "resources":
                    sawResources = true
                    resourceNodes = entries(value, "resources")
                case "admins":
                    adminNodes = stringList(value, "admins")
                case "pending_ttl":
                    if let ttl = duration(value, "pending_ttl") { pendingTTL = ttl }
                case "guard":
                    guardSettings = self.guardSettings(value)
                case "antispam":
                    antiSpamNode = value
                case "break_glass":
                    breakGlassNode = value
                case "notifications":
                    notificationsNode = value
                case "identity":
                    identity = self.identity(value)
                default:
                    warning(keyNode, "section `\(key)` is accepted but not enforced by this version of Gatehouse")
                }
            }
            if version == nil, !problems.contains(where: { $0.message.hasPrefix("version") }) {
                error(root, "`version: 1` is missing at the top of the policy")
            }
            if !sawPrincipals { error(root, "`principals:` is missing; list the users and service accounts with their groups") }
            if !sawResources { error(root, "`resources:` is missing; list what people can ask access to") }

            // Groups people get from the identity provider count as known, as do those of listed principals.
            let groups = Set(principals.values.flatMap(\.groups)).union(identity.oidc?.mappedGroups ?? [])
            var partial = Policy(version: version ?? 1, principals: principals, resources: [:], pendingTTL: pendingTTL)
            partial.identity = identity
            for (group, node) in adminNodes {
                checkGroup(group, node, known: groups, what: "admins")
            }
            partial.adminGroups = adminNodes.map(\.0)
            partial.guardSettings = guardSettings
            if let antiSpamNode { partial.antiSpam = antiSpam(antiSpamNode, groups: groups) }
            if let breakGlassNode { partial.breakGlass = breakGlass(breakGlassNode, groups: groups) }
            if let notificationsNode {
                partial.notifications = notifications(notificationsNode, groups: groups, resources: Set(resourceNodes.map(\.0)))
            }
            for (name, keyNode, value) in resourceNodes {
                checkName(name, keyNode, "resource")
                if let resource = resource(name, value, policy: partial, groups: groups) {
                    partial.resources[name] = resource
                }
            }
            return partial
        }

        mutating func principals(_ node: Node) -> [String: PrincipalEntry] {
            var out: [String: PrincipalEntry] = [:]
            for (name, keyNode, value) in entries(node, "principals") {
                checkName(name, keyNode, "principal")
                if PolicyLoader.reservedPrincipals.contains(name) {
                    error(keyNode, "`\(name)` is reserved (it names Gatehouse itself in the audit log: \(PolicyLoader.reservedPrincipals.sorted().joined(separator: ", "))); choose another principal name")
                }
                var groups: [String] = []
                var kind = PrincipalEntry.Kind.user
                for (key, _, field) in entries(value, "principal `\(name)`", allowed: ["groups", "kind"]) {
                    switch key {
                    case "groups":
                        for (group, groupNode) in stringList(field, "groups of `\(name)`") {
                            checkName(group, groupNode, "group")
                            groups.append(group)
                        }
                    default:
                        if let raw = field.scalar?.string, let parsed = PrincipalEntry.Kind(rawValue: raw) {
                            kind = parsed
                        } else {
                            error(field, "kind of `\(name)` must be `user` or `service`")
                        }
                    }
                }
                out[name] = PrincipalEntry(groups: groups, kind: kind)
            }
            return out
        }

        mutating func checkGroup(_ group: String, _ node: Node, known: Set<String>, what: String) {
            guard !known.contains(group) else { return }
            let hint = PolicyLoader.closest(to: group, in: Array(known)).map { "did you mean `\($0)`? " } ?? ""
            error(node, "unknown group `\(group)` in \(what): no principal is a member of it; \(hint)known groups: \(known.sorted().joined(separator: ", "))")
        }

        mutating func resource(_ name: String, _ node: Node, policy: Policy, groups: Set<String>) -> Resource? {
            var kind: Resource.Kind?
            var labels: [String: String] = [:]
            var roles: [String: Role] = [:]
            var actions: Role?
            var proxy: ProxySettings?
            var proxyNode: Node?
            var sawRoles = false
            let fields = entries(node, "resource `\(name)`", allowed: ["kind", "labels", "roles", "actions", "proxy", "upstream"])
            for (key, keyNode, value) in fields {
                switch key {
                case "kind":
                    let raw = value.scalar?.string ?? ""
                    if let parsed = Resource.Kind(rawValue: raw) {
                        kind = parsed
                    } else {
                        let kinds = Resource.Kind.allCases.map(\.rawValue)
                        let hint = PolicyLoader.closest(to: raw, in: kinds).map { "did you mean `\($0)`? " } ?? ""
                        error(value, "kind `\(raw)` of resource `\(name)` is not known; \(hint)use one of \(kinds.joined(separator: ", "))")
                    }
                case "labels":
                    for (label, _, labelValue) in entries(value, "labels of `\(name)`") {
                        labels[label] = string(labelValue, "label `\(label)`")
                    }
                case "roles":
                    sawRoles = true
                    for (roleName, roleKey, roleNode) in entries(value, "roles of `\(name)`") {
                        checkName(roleName, roleKey, "role")
                        if roleName == Role.actionRoleName {
                            error(roleKey, "`\(Role.actionRoleName)` is reserved for one-shot action requests; configure those under `actions:` of the resource and give this role another name")
                            continue
                        }
                        if let role = role(roleName, roleNode, resource: name, policy: policy, groups: groups) {
                            roles[roleName] = role
                        }
                    }
                case "actions":
                    actions = role(Role.actionRoleName, value, resource: name, policy: policy, groups: groups, forActions: true)
                case "proxy":
                    proxyNode = keyNode
                    proxy = proxySettings(value, resource: name)
                default:
                    warning(keyNode, "`\(key)` of resource `\(name)` is accepted but not enforced by this version of Gatehouse")
                }
            }
            if kind == nil, !fields.contains(where: { $0.0 == "kind" }) {
                error(node, "resource `\(name)` needs a `kind:` (\(Resource.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            if !sawRoles { error(node, "resource `\(name)` needs `roles:`; without roles nobody can ask for access to it") }
            guard let kind else { return nil }
            if proxyNode != nil, kind != .postgres {
                error(proxyNode, "resource `\(name)` is \(kind.rawValue); the guard proxy serves `kind: postgres` resources only")
            }
            var resource = Resource(name: name, kind: kind, labels: labels, roles: roles, actions: actions)
            resource.proxy = proxy
            return resource
        }

        mutating func role(_ name: String, _ node: Node, resource: String, policy: Policy, groups: Set<String>,
                           forActions: Bool = false) -> Role? {
            let what = forActions ? "actions of `\(resource)`" : "role `\(resource)/\(name)`"
            var requesters: [(String, Node)] = []
            var approvers: [(String, Node)] = []
            var approvals: Int?
            var approvalsNode: Node?
            // One-shot action approvals cover exactly one statement, whatever its level below forbidden.
            var maxDuration: TimeSpan? = forActions ? TimeSpan(seconds: 3600) : nil
            var allows: RiskLevel? = forActions ? .dangerous : nil
            var reason = ReasonRule()
            let allowed = ["requesters", "approvers", "approvals", "max_duration", "reason"] + (forActions ? [] : ["allows"])
            let fields = entries(node, what, allowed: allowed)
            var failed = false
            for (key, _, value) in fields {
                switch key {
                case "requesters": requesters = stringList(value, "requesters of \(what)")
                case "approvers": approvers = stringList(value, "approvers of \(what)")
                case "approvals":
                    approvalsNode = value
                    approvals = int(value, "approvals of \(what)", min: 0, max: 10)
                    if approvals == nil { failed = true }
                case "max_duration":
                    maxDuration = duration(value, "max_duration of \(what)")
                    if maxDuration == nil { failed = true }
                case "allows":
                    let raw = value.scalar?.string ?? ""
                    if let level = RiskLevel(rawValue: raw), level != .forbidden {
                        allows = level
                    } else if raw == "forbidden" {
                        error(value, "allows of \(what) cannot be `forbidden`: forbidden actions are never allowed; use read, write or dangerous")
                        failed = true
                    } else {
                        error(value, "allows of \(what) must be read, write or dangerous")
                        failed = true
                    }
                default:
                    if let rule = reasonRule(value, what) { reason = rule } else { failed = true }
                }
            }
            for (group, groupNode) in requesters { checkGroup(group, groupNode, known: groups, what: "requesters of \(what)") }
            for (group, groupNode) in approvers { checkGroup(group, groupNode, known: groups, what: "approvers of \(what)") }
            if requesters.isEmpty {
                error(node, "\(what) needs `requesters:`, the groups allowed to ask for it")
                failed = true
            }
            if approvals == nil, !fields.contains(where: { $0.0 == "approvals" }) {
                error(node, "\(what) needs `approvals:` (0 grants at once; N needs N distinct approvers)")
                failed = true
            }
            if maxDuration == nil, !forActions, !fields.contains(where: { $0.0 == "max_duration" }) {
                error(node, "\(what) needs `max_duration:`, for example 1h")
                failed = true
            }
            if allows == nil, !forActions, !fields.contains(where: { $0.0 == "allows" }) {
                error(node, "\(what) needs `allows:` (read, write or dangerous)")
                failed = true
            }
            let role = Role(name: name, requesters: requesters.map(\.0), approvers: approvers.map(\.0),
                            approvals: approvals ?? 0, maxDuration: maxDuration ?? TimeSpan(seconds: 1),
                            allows: allows ?? .read, reason: reason)
            if let approvals, approvals > 0 {
                if approvers.isEmpty {
                    error(approvalsNode, "\(what) needs \(approvals) approval(s) but lists no `approvers:`; add approver groups or set `approvals: 0`")
                    failed = true
                } else if let oidc = policy.identity.oidc, !oidc.mappedGroups.isDisjoint(with: role.approvers) {
                    // Approvers come from the provider: how many there are is known only when they sign in.
                } else {
                    let eligible = policy.eligibleApprovers(for: role)
                    if eligible.count < approvals {
                        error(approvalsNode, "\(what) needs \(approvals) approvals but only \(eligible.count) human(s) can approve\(eligible.isEmpty ? "" : " (" + eligible.sorted().joined(separator: ", ") + ")"); lower `approvals` or add approvers")
                        failed = true
                    } else {
                        // A requester cannot approve their own request: warn when some requester could never be approved.
                        let stuck = policy.members(of: role.requesters).filter { eligible.subtracting([$0]).count < approvals }
                        if !stuck.isEmpty {
                            warning(approvalsNode, "requests of \(stuck.sorted().joined(separator: ", ")) for \(what) can never collect \(approvals) approvals, because nobody approves their own request")
                        }
                    }
                }
            }
            return failed ? nil : role
        }

        /// `guard: {sql: {LEVEL: [category, ...]}, shell: {LEVEL: [category or "command pattern", ...]}}`
        mutating func guardSettings(_ node: Node) -> GuardSettings {
            var settings = GuardSettings()
            for (kindName, _, kindNode) in entries(node, "guard", allowed: ["sql", "shell"]) {
                let kind: Action.Kind = kindName == "sql" ? .sql : .shell
                let names = GuardCatalog.categories(for: kind).map(\.name)
                for (levelName, _, listNode) in entries(kindNode, "guard.\(kindName)", allowed: RiskLevel.allCases.map(\.rawValue)) {
                    guard let level = RiskLevel(rawValue: levelName) else { continue }
                    for (item, itemNode) in stringList(listNode, "guard.\(kindName).\(levelName)") {
                        if let category = GuardCatalog.category(item, for: kind) {
                            if category.failClosed, level < .dangerous {
                                error(itemNode, "`\(item)` fails closed and cannot be moved below dangerous")
                            } else if kind == .sql {
                                settings.sqlLevels[item] = level
                            } else {
                                settings.shellLevels[item] = level
                            }
                        } else if kind == .shell, item.contains(" ") || !item.contains("_") {
                            settings.shellRules.append(GuardSettings.ShellRule(pattern: item, level: level))
                        } else {
                            let hint = PolicyLoader.closest(to: item, in: names).map { "did you mean `\($0)`? " } ?? ""
                            error(itemNode, "`\(item)` is not a \(kindName) category; \(hint)run `gatehouse classify --categories` for the list")
                        }
                    }
                }
            }
            return settings
        }

        mutating func reasonRule(_ node: Node, _ what: String) -> ReasonRule? {
            var rule = ReasonRule()
            var ok = true
            for (key, _, value) in entries(node, "reason of \(what)", allowed: ["min_length", "ticket"]) {
                if key == "min_length" {
                    if let length = int(value, "reason.min_length of \(what)", min: 1, max: ReasonRule.maximumLength) {
                        rule.minLength = length
                    } else { ok = false }
                } else if let pattern = string(value, "reason.ticket of \(what)") {
                    do {
                        _ = try NSRegularExpression(pattern: pattern)
                        rule.ticketPattern = pattern
                    } catch {
                        self.error(value, "reason.ticket of \(what) is not a valid regular expression: `\(pattern)`; check brackets and escapes, for example \"(INC|CHG)-[0-9]+\"")
                        ok = false
                    }
                } else { ok = false }
            }
            return ok ? rule : nil
        }
    }

    /// The candidate nearest to `word` by edit distance, when it is close enough to be a likely typo.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(word, $0)) }.filter { $0.1 <= max(2, word.count / 3) }
        return scored.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
