import Foundation

/// The hard limits a new request meets before the spam score, in the order they apply: the denial
/// cooldown, a throttle the score set earlier, the cap on waiting requests, then the GCRA rates
/// (per principal, per principal and resource, per source address). Pure: the caller reads what
/// the gate looks at inside the filing transaction, and writes the rate buckets it says to consume.
public enum FilingGate {
    /// One GCRA bucket a filing attempt passes through.
    public struct RateBucket: Sendable, Equatable {
        /// The name in the RateLimit fields (`per-principal`, `per-resource`, `per-source-ip`).
        public var policy: String
        /// The key its TAT is stored under. Principal and resource names cannot contain `/` or `:`
        /// (policy names are `[a-z0-9._-]`), so keys of different buckets never collide.
        public var key: String
        public var limit: RateLimit
        /// Whose requests it counts, as the refusal says it.
        public var scope: String
    }

    /// What the gate looks at, read in the filing transaction.
    public struct Situation: Sendable {
        /// The principal's history (for the denial cooldown).
        public var history: SpamHistory
        /// Until when the score throttled the principal, if it did.
        public var throttledUntil: Date?
        /// The principal's waiting (pending and quarantined) requests.
        public var open: [AccessRequest]
        /// The stored TAT of every bucket key (nil: never seen).
        public var tats: [String: Int64]

        public init(history: SpamHistory, throttledUntil: Date?, open: [AccessRequest], tats: [String: Int64]) {
            self.history = history
            self.throttledUntil = throttledUntil
            self.open = open
            self.tats = tats
        }
    }

    public enum Verdict: Sendable, Equatable {
        /// Filing may go on; store these TATs (every bucket's, and only when all allow it).
        case pass(consume: [Consumption])
        /// The first limit that refuses, and how the refusal is recorded.
        case refused(LimitRefusal, RecordedRefusal.Kind)
    }

    public struct Consumption: Sendable, Equatable {
        public var key: String
        public var tat: Int64
    }

    /// The rate buckets an attempt passes through, in order.
    public static func rateBuckets(requester: String, resource: String, sourceIP: String?, policy: AntiSpamPolicy) -> [RateBucket] {
        var buckets: [RateBucket] = []
        if let limit = policy.perPrincipal {
            buckets.append(RateBucket(policy: "per-principal", key: "p:" + requester, limit: limit, scope: "requests from you"))
        }
        if let limit = policy.perResource {
            buckets.append(RateBucket(policy: "per-resource", key: "r:" + requester + "/" + resource, limit: limit,
                                      scope: "your requests for \(resource)"))
        }
        if let limit = policy.perSourceIP, let sourceIP {
            buckets.append(RateBucket(policy: "per-source-ip", key: "ip:" + sourceIP, limit: limit, scope: "requests from your address"))
        }
        return buckets
    }

    /// The first hard limit the request for `resource` runs into, or the buckets to consume.
    public static func judge(resource: String, buckets: [RateBucket], situation: Situation, policy spam: AntiSpamPolicy,
                             now: Date) -> Verdict {
        if let cooldown = SpamScore.denialCooldown(situation.history.own, resource: resource, rule: spam.denialCooldown), cooldown.until > now {
            let wait = LimitRefusal.seconds(cooldown.until.unixMilliseconds - now.unixMilliseconds)
            return .refused(LimitRefusal(policy: "denial-cooldown",
                                         message: "your last \(cooldown.denials) request(s) for \(resource) were denied in a row; you can ask again in \(TimeSpan(seconds: wait)) (at \(cooldown.until.rfc3339)). Talk to the approvers first: each request before then is refused and counts against you in the anti-spam score.",
                                         retryAfterSeconds: wait, quota: 1, windowSeconds: cooldown.length.seconds), .cooldown)
        }
        if let until = situation.throttledUntil, until > now {
            let wait = LimitRefusal.seconds(until.unixMilliseconds - now.unixMilliseconds)
            return .refused(LimitRefusal(policy: "throttle", message: "your requests are throttled by the anti-spam policy until \(until.rfc3339); try again in \(TimeSpan(seconds: wait))",
                                         retryAfterSeconds: wait, quota: 1, windowSeconds: spam.throttleCooldown.seconds), .limit)
        }
        if let cap = spam.maxPendingPerPrincipal, situation.open.count >= cap {
            let soonest = situation.open.map(\.pendingExpiresAt).min() ?? now
            let wait = LimitRefusal.seconds(soonest.unixMilliseconds - now.unixMilliseconds)
            return .refused(LimitRefusal(policy: "pending", message: "you already have \(situation.open.count) requests waiting (the limit is \(cap)); cancel one (`gatehouse requests`, `gatehouse cancel ID`) or wait for a decision",
                                         retryAfterSeconds: wait, quota: cap), .limit)
        }
        var consume: [Consumption] = []
        for bucket in buckets {
            let outcome = GCRA.attempt(tat: situation.tats[bucket.key], now: now.unixMilliseconds, limit: bucket.limit)
            guard outcome.allowed else {
                let wait = LimitRefusal.seconds(outcome.retryAfterMilliseconds)
                let limit = bucket.limit
                return .refused(LimitRefusal(policy: bucket.policy, message: "too many \(bucket.scope): the limit is \(limit.count) per \(limit.period) with bursts of \(limit.burst); try again in \(TimeSpan(seconds: wait))",
                                             retryAfterSeconds: wait, quota: limit.count, windowSeconds: limit.period.seconds), .limit)
            }
            consume.append(Consumption(key: bucket.key, tat: outcome.tat))
        }
        return .pass(consume: consume)
    }
}
