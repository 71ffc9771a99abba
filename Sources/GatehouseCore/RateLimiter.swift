/// The generic cell rate algorithm (GCRA): one number per key, the theoretical arrival time (TAT)
/// of the next request. A request is allowed when, after it, the TAT is no further ahead of now
/// than `burst` intervals; allowing it moves the TAT one interval on. Refusals change nothing.
public enum GCRA {
    public struct Outcome: Sendable, Equatable {
        public var allowed: Bool
        /// The TAT to store (unchanged when refused).
        public var tat: Int64
        /// Requests that could still be made right now.
        public var remaining: Int
        /// When refused: milliseconds until one request will be allowed.
        public var retryAfterMilliseconds: Int64
        /// Milliseconds until the whole burst is available again.
        public var resetMilliseconds: Int64
    }

    /// `tat` is the stored TAT (nil for a key never seen); times are Unix milliseconds.
    public static func attempt(tat stored: Int64?, now: Int64, limit: RateLimit) -> Outcome {
        let interval = limit.intervalMilliseconds
        let capacity = interval * Int64(limit.burst)
        let base = max(stored ?? now, now)
        let next = base + interval
        if next - now <= capacity {
            return Outcome(allowed: true, tat: next, remaining: Int((capacity - (next - now)) / interval),
                           retryAfterMilliseconds: 0, resetMilliseconds: next - now)
        }
        return Outcome(allowed: false, tat: base, remaining: 0, retryAfterMilliseconds: next - now - capacity,
                       resetMilliseconds: base - now)
    }
}

/// A hard limit that refused a request, with what a client needs to back off: the IETF RateLimit
/// fields (draft-ietf-httpapi-ratelimit-headers, Structured Fields form) and Retry-After.
public struct LimitRefusal: Sendable, Equatable {
    /// The policy's name in the RateLimit fields: `per-principal`, `per-resource`, `per-source-ip`,
    /// `pending`, `denial-cooldown`, `throttle`.
    public var policy: String
    public var message: String
    public var retryAfterSeconds: Int64
    /// Quota and window of the policy, when it is a rate (`q` and `w`).
    public var quota: Int?
    public var windowSeconds: Int64?

    public init(policy: String, message: String, retryAfterSeconds: Int64, quota: Int? = nil, windowSeconds: Int64? = nil) {
        self.policy = policy
        self.message = message
        self.retryAfterSeconds = max(1, retryAfterSeconds)
        self.quota = quota
        self.windowSeconds = windowSeconds
    }

    /// `RateLimit-Policy: "per-principal";q=20;w=3600`
    public var policyField: String {
        var field = "\"\(policy)\""
        if let quota { field += ";q=\(quota)" }
        if let windowSeconds { field += ";w=\(windowSeconds)" }
        return field
    }

    /// `RateLimit: "per-principal";r=0;t=120`: nothing left, and when the next request is allowed.
    public var rateLimitField: String { "\"\(policy)\";r=0;t=\(retryAfterSeconds)" }

    /// Whole seconds, rounded up: a client that waits this long is not refused again for this reason.
    public static func seconds(_ milliseconds: Int64) -> Int64 { (milliseconds + 999) / 1000 }
}
