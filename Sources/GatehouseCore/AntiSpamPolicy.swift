/// A rate written the way the policy file writes it: `20/h` with a burst of 5 means five requests
/// at once, then one every three minutes.
public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
    public var count: Int
    public var period: TimeSpan
    public var burst: Int

    public init(count: Int, period: TimeSpan, burst: Int) {
        self.count = count
        self.period = period
        self.burst = burst
    }

    /// The emission interval: one request every `period / count`, in milliseconds.
    public var intervalMilliseconds: Int64 { max(1, period.seconds * 1000 / Int64(count)) }

    public var description: String { "\(count)/\(period) (burst \(burst))" }

    /// Parses `20/h`, `100/d`, `5/m`, `1/10m`: a whole number, a slash and a unit or a duration.
    public static func parseRate(_ text: String) -> (count: Int, period: TimeSpan)? {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let count = Int(parts[0]), count > 0, count <= 1_000_000 else { return nil }
        let unit = String(parts[1])
        let named: [String: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        if let seconds = named[unit] { return (count, TimeSpan(seconds: seconds)) }
        guard let span = try? TimeSpan.parse(unit) else { return nil }
        return (count, span)
    }
}

/// The signals of the spam score, with the names the policy file uses for their weights.
public enum SpamSignal: String, Sendable, CaseIterable, Codable {
    case burst
    case repeatedReason = "repeated_reason"
    case sharedReason = "shared_reason"
    case lowInformationReason = "low_information_reason"
    case enumeration
    /// Several of the principal's requests already wait for approvers.
    case waiting
    case recentDenial = "recent_denial"
    case cooldownViolation = "cooldown_violation"
    case overLimit = "over_limit"
    case newPrincipal = "new_principal"
    case offHours = "off_hours"
    case ticket
    case previouslyApproved = "previously_approved"

    public static let defaultWeights: [SpamSignal: Int] = [
        .burst: 2, .repeatedReason: 3, .sharedReason: 3, .lowInformationReason: 2, .enumeration: 3, .waiting: 3,
        .recentDenial: 2, .cooldownViolation: 4, .overLimit: 2, .newPrincipal: 2, .offHours: 1,
        .ticket: -2, .previouslyApproved: -2,
    ]
}

/// What the total score does to a request, from mildest to strongest.
public enum SpamAction: String, Sendable, Codable, CaseIterable, Comparable {
    /// Filed and notified as usual.
    case allow
    /// Filed, but approvers see it only in their next digest, and the principal waits out a cooldown.
    case throttle
    /// Filed, needing one more approval than the policy asks.
    case extraApproval = "extra_approval"
    /// Held in state `quarantined` for the reviewers; nobody else is notified.
    case quarantine
    /// Held, and the principal may not request again until an admin unblocks them.
    case block

    var rank: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (lhs: SpamAction, rhs: SpamAction) -> Bool { lhs.rank < rhs.rank }
}

/// The `antispam:` section of the policy. Every field has the default from the design; a policy
/// without the section gets all of them (anti-spam is on unless `enabled: false`).
public struct AntiSpamPolicy: Sendable, Equatable {
    public var enabled = true
    /// How many requests an on-call engineer files at once in an incident (read access to every system
    /// it touches); `policy check` warns about a per-principal burst below it.
    public static let incidentBurst = 6
    /// A burst of 10: an on-call engineer opens read access to the systems an incident touches at once.
    public var perPrincipal: RateLimit? = RateLimit(count: 20, period: TimeSpan(seconds: 3600), burst: 10)
    /// Per principal and resource.
    public var perResource: RateLimit? = RateLimit(count: 60, period: TimeSpan(seconds: 3600), burst: 10)
    public var perSourceIP: RateLimit? = RateLimit(count: 100, period: TimeSpan(seconds: 3600), burst: 20)
    public var maxPendingPerPrincipal: Int? = 5
    public var denialCooldown = DenialCooldownRule()
    /// Each approver's budget of immediate notifications; beyond it, one digest.
    public var approverNotifications: RateLimit? = RateLimit(count: 10, period: TimeSpan(seconds: 3600), burst: 5)
    /// How long a throttled principal waits before filing again.
    public var throttleCooldown = TimeSpan(seconds: 600)
    /// How long the answer to a blocked principal's request is held back (a tarpit: a flooding
    /// client with a few connections then waits instead of spending the server's CPU). Nil: at once.
    public var blockedDelay: TimeSpan? = TimeSpan(seconds: 1)
    /// Groups that review quarantined requests and hear about reports. Empty: the admin groups.
    public var reviewers: [String] = []
    public var thresholds = Thresholds()
    public var weights: [SpamSignal: Int] = SpamSignal.defaultWeights
    public var windows = SignalWindows()

    public init() {}

    public struct Thresholds: Sendable, Equatable {
        public var throttle = 4
        public var extraApproval = 8
        public var quarantine = 12
        public var block = 15
        public init() {}

        /// The strongest action whose threshold the score reaches.
        public func action(for score: Int) -> SpamAction {
            if score >= block { return .block }
            if score >= quarantine { return .quarantine }
            if score >= extraApproval { return .extraApproval }
            if score >= throttle { return .throttle }
            return .allow
        }
    }

    /// How far back each signal looks, and from how many occurrences it fires.
    public struct SignalWindows: Sendable, Equatable {
        /// `burst`: more than `burstCount` attempts within `burst`.
        public var burst = TimeSpan(seconds: 60)
        public var burstCount = 3
        public var repeatedReason = TimeSpan(seconds: 86_400)
        /// `shared_reason`: the same reason from at least `sharedReasonPrincipals` other principals
        /// (from one, when the principal is new: fresh accounts sharing a reason are a campaign).
        public var sharedReason = TimeSpan(seconds: 3600)
        public var sharedReasonPrincipals = 2
        /// `waiting`: at least this many of the principal's requests already wait for approvers.
        public var waitingRequests = 3
        /// `enumeration`: requests for at least `enumerationResources` distinct resources.
        public var enumeration = TimeSpan(seconds: 3600)
        public var enumerationResources = 4
        public var recentDenial = TimeSpan(seconds: 86_400)
        /// `over_limit` and `cooldown_violation` count refused attempts within this window.
        public var refusals = TimeSpan(seconds: 3600)
        /// `new_principal`: the principal filed fewer requests than this before. (Not the age of the
        /// first request: on a new deployment everyone's first request is recent.)
        public var newPrincipalRequests = 3
        /// `off_hours` and `previously_approved` look this far back.
        public var history = TimeSpan(seconds: 90 * 86_400)
        /// `off_hours` needs this many past requests before it judges what is usual.
        public var offHoursMinimumHistory = 10
        /// Texts at least this similar (trigram Jaccard) count as the same reason.
        public var similarity = 0.8
        public init() {}
    }

    /// A count-based signal adds its weight once at its threshold and once more per further
    /// occurrence, up to this many times.
    public static let maximumMultiple = 4
}

/// Consecutive denials of a principal's requests for one resource start a cooldown that grows by
/// `factor` with each further denial, up to `max`. An approval ends the run; cancelling does not.
public struct DenialCooldownRule: Sendable, Equatable {
    public var base = TimeSpan(seconds: 600)
    public var factor = 2
    public var max = TimeSpan(seconds: 86_400)
    public init() {}

    /// The cooldown after `denials` consecutive denials (0: none).
    public func length(afterDenials denials: Int) -> TimeSpan? {
        guard denials > 0 else { return nil }
        var seconds = base.seconds
        for _ in 1..<denials {
            seconds = seconds.multipliedReportingOverflow(by: Int64(factor)).overflow ? self.max.seconds : seconds * Int64(factor)
            if seconds >= self.max.seconds { break }
        }
        return TimeSpan(seconds: Swift.min(seconds, self.max.seconds))
    }
}
