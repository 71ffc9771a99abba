import Yams

extension PolicyLoader.Reader {
    /// The `antispam:` section; every key is optional and falls back to the design's default.
    mutating func antiSpam(_ node: Node, groups: Set<String>) -> AntiSpamPolicy {
        var policy = AntiSpamPolicy()
        let keys = ["enabled", "limits", "denial_cooldown", "approver_notifications", "throttle_cooldown", "blocked_delay", "reviewers", "score"]
        for (key, _, value) in entries(node, "antispam", allowed: keys) {
            switch key {
            case "enabled":
                switch value.scalar?.string {
                case "true": policy.enabled = true
                case "false": policy.enabled = false
                default: error(value, "antispam.enabled must be true or false")
                }
            case "limits":
                let limitKeys = ["per_principal", "per_resource", "per_source_ip", "max_pending_per_principal"]
                for (name, _, limit) in entries(value, "antispam.limits", allowed: limitKeys) {
                    switch name {
                    case "per_principal":
                        policy.perPrincipal = rate(limit, "antispam.limits.per_principal", default: policy.perPrincipal)
                        if let burst = policy.perPrincipal?.burst, burst < AntiSpamPolicy.incidentBurst {
                            warning(limit, "a per_principal burst of \(burst) refuses an on-call engineer who opens read access to \(AntiSpamPolicy.incidentBurst) or more systems at once in an incident (the labelled traffic suite's on-call pattern); the default is 10")
                        }
                    case "per_resource": policy.perResource = rate(limit, "antispam.limits.per_resource", default: policy.perResource)
                    case "per_source_ip": policy.perSourceIP = rate(limit, "antispam.limits.per_source_ip", default: policy.perSourceIP)
                    default:
                        if limit.scalar?.string == "off" { policy.maxPendingPerPrincipal = nil } else if let cap = int(limit, "antispam.limits.max_pending_per_principal", min: 1, max: 10_000) {
                            policy.maxPendingPerPrincipal = cap
                        }
                    }
                }
            case "denial_cooldown":
                for (name, _, field) in entries(value, "antispam.denial_cooldown", allowed: ["base", "factor", "max"]) {
                    switch name {
                    case "base": if let span = duration(field, "antispam.denial_cooldown.base") { policy.denialCooldown.base = span }
                    case "max": if let span = duration(field, "antispam.denial_cooldown.max") { policy.denialCooldown.max = span }
                    default: if let factor = int(field, "antispam.denial_cooldown.factor", min: 1, max: 100) { policy.denialCooldown.factor = factor }
                    }
                }
                if policy.denialCooldown.max < policy.denialCooldown.base {
                    error(value, "antispam.denial_cooldown.max (\(policy.denialCooldown.max)) is shorter than its base (\(policy.denialCooldown.base)); make max at least the base")
                }
            case "approver_notifications":
                policy.approverNotifications = rate(value, "antispam.approver_notifications", default: policy.approverNotifications)
            case "throttle_cooldown":
                if let span = duration(value, "antispam.throttle_cooldown") { policy.throttleCooldown = span }
            case "blocked_delay":
                if value.scalar?.string == "off" {
                    policy.blockedDelay = nil
                } else if let span = duration(value, "antispam.blocked_delay") {
                    if span.seconds > 60 {
                        error(value, "antispam.blocked_delay is \(span); at most 1m (a longer hold only ties up connections)")
                    } else {
                        policy.blockedDelay = span
                    }
                }
            case "reviewers":
                for (group, groupNode) in stringList(value, "antispam.reviewers") {
                    checkGroup(group, groupNode, known: groups, what: "antispam.reviewers")
                    policy.reviewers.append(group)
                }
            default:
                score(value, into: &policy)
            }
        }
        return policy
    }

    /// `{rate: 20/h, burst: 5}`, or `off`.
    mutating func rate(_ node: Node, _ what: String, default fallback: RateLimit?) -> RateLimit? {
        if node.scalar?.string == "off" { return nil }
        var limit = fallback ?? RateLimit(count: 20, period: TimeSpan(seconds: 3600), burst: 5)
        for (key, _, value) in entries(node, what, allowed: ["rate", "burst"]) {
            if key == "burst" {
                if let burst = int(value, "\(what).burst", min: 1, max: 100_000) { limit.burst = burst }
            } else if let text = value.scalar?.string, let parsed = RateLimit.parseRate(text) {
                limit.count = parsed.count
                limit.period = parsed.period
            } else {
                error(value, "\(what).rate must be a count per unit or duration, like 20/h, 100/d or 1/10m")
            }
        }
        return limit
    }

    mutating func score(_ node: Node, into policy: inout AntiSpamPolicy) {
        for (key, _, value) in entries(node, "antispam.score", allowed: ["thresholds", "weights"]) {
            if key == "thresholds" {
                var thresholds = policy.thresholds
                for (name, _, field) in entries(value, "antispam.score.thresholds", allowed: ["throttle", "extra_approval", "quarantine", "block"]) {
                    guard let number = int(field, "antispam.score.thresholds.\(name)", min: 1, max: 1000) else { continue }
                    switch name {
                    case "throttle": thresholds.throttle = number
                    case "extra_approval": thresholds.extraApproval = number
                    case "quarantine": thresholds.quarantine = number
                    default: thresholds.block = number
                    }
                }
                let ordered = [thresholds.throttle, thresholds.extraApproval, thresholds.quarantine, thresholds.block]
                if ordered != ordered.sorted() {
                    error(value, "antispam.score.thresholds must grow: throttle ≤ extra_approval ≤ quarantine ≤ block (now \(ordered.map(String.init).joined(separator: ", ")))")
                }
                policy.thresholds = thresholds
            } else {
                let names = SpamSignal.allCases.map(\.rawValue)
                for (name, _, field) in entries(value, "antispam.score.weights", allowed: names) {
                    if let signal = SpamSignal(rawValue: name), let weight = int(field, "antispam.score.weights.\(name)", min: -100, max: 100) {
                        policy.weights[signal] = weight
                    }
                }
            }
        }
    }
}
