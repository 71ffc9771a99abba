import Foundation
import Yams

extension PolicyLoader.Reader {
    /// `break_glass: {enabled, max_duration, rate, requesters, notify, review_required}`.
    mutating func breakGlass(_ node: Node, groups: Set<String>) -> BreakGlassPolicy {
        var policy = BreakGlassPolicy()
        let keys = ["enabled", "max_duration", "rate", "requesters", "notify", "review_required"]
        for (key, _, value) in entries(node, "break_glass", allowed: keys) {
            switch key {
            case "enabled", "review_required":
                guard let flag = bool(value, "break_glass.\(key)") else { continue }
                if key == "enabled" { policy.enabled = flag } else { policy.reviewRequired = flag }
            case "max_duration":
                guard let span = duration(value, "break_glass.max_duration") else { continue }
                if span.seconds > 24 * 3600 {
                    error(value, "break_glass.max_duration is \(span); at most 24h (emergency access is short; file a normal request for longer work)")
                } else {
                    policy.maxDuration = span
                }
            case "rate":
                // `1/d` alone means a burst of 1.
                if let text = value.scalar?.string, text != "off" {
                    if let parsed = RateLimit.parseRate(text) {
                        policy.rate = RateLimit(count: parsed.count, period: parsed.period, burst: 1)
                    } else {
                        error(value, "break_glass.rate must be a count per unit or duration, like 1/d or 2/12h, or off")
                    }
                } else {
                    policy.rate = rate(value, "break_glass.rate", default: policy.rate)
                }
            default:
                var names: [String] = []
                for (group, groupNode) in stringList(value, "break_glass.\(key)") {
                    checkGroup(group, groupNode, known: groups, what: "break_glass.\(key)")
                    names.append(group)
                }
                if key == "requesters" { policy.requesters = names } else { policy.notify = names }
            }
        }
        return policy
    }
}
