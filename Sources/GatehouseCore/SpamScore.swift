import Foundation

/// A past request as the spam score sees it.
public struct PastRequest: Sendable, Equatable {
    public var id: String
    public var requester: String
    public var resource: String
    public var role: String
    public var reason: String
    public var state: RequestState
    public var createdAt: Date
    public var decidedAt: Date?
    /// Who decided: an approver, `policy` (granted without approval), `system` (expired).
    public var decidedBy: String?

    public init(id: String, requester: String, resource: String, role: String, reason: String, state: RequestState,
                createdAt: Date, decidedAt: Date? = nil, decidedBy: String? = nil) {
        self.decidedBy = decidedBy
        self.id = id
        self.requester = requester
        self.resource = resource
        self.role = role
        self.reason = reason
        self.state = state
        self.createdAt = createdAt
        self.decidedAt = decidedAt
    }

    /// Whether the request went to approvers: one the policy granted at once (`approvals: 0`)
    /// troubled nobody, and weighs half in `burst` and `enumeration`.
    public var reachedApprovers: Bool { decidedBy != "policy" }

    /// Approved by another person (not granted at once by the policy, not taken by break-glass): part
    /// of a track record.
    public var approvedByPerson: Bool {
        guard state == .approved, let decidedBy else { return false }
        return !["policy", "break-glass", "system"].contains(decidedBy) && decidedBy != requester
    }

    public init(_ request: AccessRequest) {
        self.init(id: request.id, requester: request.requester, resource: request.resource, role: request.role,
                  reason: request.reason, state: request.state, createdAt: request.createdAt, decidedAt: request.decidedAt,
                  decidedBy: request.decidedBy)
    }
}

/// An attempt a hard limit refused, kept so that hammering on a limit counts against the principal.
public struct RecordedRefusal: Sendable, Equatable {
    public enum Kind: String, Sendable { case limit, cooldown }
    public var kind: Kind
    public var resource: String
    public var at: Date

    public init(kind: Kind, resource: String, at: Date) {
        self.kind = kind
        self.resource = resource
        self.at = at
    }
}

/// What the store knows about a principal's recent behaviour, read inside the transaction that
/// files (or refuses) the request.
public struct SpamHistory: Sendable {
    /// The principal's requests within the longest window, newest first.
    public var own: [PastRequest]
    /// Other principals' requests within the shared-reason window.
    public var others: [PastRequest]
    /// The principal's refused attempts within the refusal window (the current one included).
    public var refusals: [RecordedRefusal]
    /// How many requests the principal filed before this one, ever (a track record).
    public var earlierRequests: Int
    /// When an admin last lifted the principal's block: requests filed and attempts refused before it count
    /// no more against them (the track record they earned still counts for them).
    public var unblockedAt: Date?

    public init(own: [PastRequest] = [], others: [PastRequest] = [], refusals: [RecordedRefusal] = [], earlierRequests: Int = 0,
                unblockedAt: Date? = nil) {
        self.own = own
        self.others = others
        self.refusals = refusals
        self.earlierRequests = earlierRequests
        self.unblockedAt = unblockedAt
    }
}

/// The request being judged.
public struct SpamAttempt: Sendable {
    public var principal: String
    public var resource: String
    public var reason: String
    /// A ticket the role's pattern accepts (or, for roles without one, any `ABC-123`-style ticket).
    public var hasTicket: Bool
    /// The attempt was refused by a hard limit (its refusal is already in the history).
    public var refused: Bool
    /// The request goes to approvers (its role needs at least one approval).
    public var reachesApprovers: Bool
    /// The role asked for (nil: not known; then every earlier request for the resource may repeat it).
    public var role: String?

    public init(principal: String, resource: String, reason: String, hasTicket: Bool, refused: Bool = false, reachesApprovers: Bool = true,
                role: String? = nil) {
        self.role = role
        self.principal = principal
        self.resource = resource
        self.reason = reason
        self.hasTicket = hasTicket
        self.refused = refused
        self.reachesApprovers = reachesApprovers
    }
}

/// One signal that fired: how often, how many points, and a sentence an admin can read.
public struct FiredSignal: Sendable, Equatable, Codable {
    public var signal: SpamSignal
    public var count: Int
    public var points: Int
    public var detail: String

    public init(signal: SpamSignal, count: Int, points: Int, detail: String) {
        self.signal = signal
        self.count = count
        self.points = points
        self.detail = detail
    }
}

public struct SpamVerdict: Sendable, Equatable, Codable {
    public var score: Int
    public var signals: [FiredSignal]
    public var action: SpamAction

    public init(score: Int, signals: [FiredSignal], action: SpamAction) {
        self.score = score
        self.signals = signals
        self.action = action
    }

    /// `burst +4, repeated_reason +3`: the signals in one line, for audit events and messages.
    public var summary: String {
        signals.map { "\($0.signal.rawValue) \($0.points >= 0 ? "+" : "")\($0.points)" }.joined(separator: ", ")
    }
}

/// What "the same reason" means everywhere: trigram similarity at or above the threshold, and no
/// different ticket cited (a different ticket is different work, however alike the words around it).
public struct SameReason: Sendable {
    let grams: Set<UInt64>
    let tickets: Set<String>
    let threshold: Double

    public init(_ reason: String, threshold: Double) {
        grams = ReasonText.trigrams(reason)
        tickets = SpamScore.tickets(in: reason)
        self.threshold = threshold
    }

    public func matches(_ other: String) -> Bool {
        (tickets.isEmpty || SpamScore.tickets(in: other) == tickets)
            && ReasonText.similarity(grams, ReasonText.trigrams(other)) >= threshold
    }
}

/// The additive spam score: each signal that fires adds its weight (count-based signals add it
/// once per occurrence past their threshold, up to `AntiSpamPolicy.maximumMultiple` times); the
/// total picks the action. Pure: everything it looks at is in the attempt and the history.
public enum SpamScore {
    /// How many reads granted at once under one ticket may count as one incident (`evaluate`): the systems an
    /// on-call engineer looks at first; more is a sweep.
    static let incidentReads = 6

    /// `INC-4411`, `CHG-77`, `OPS-1`: what a ticket reference looks like when the role names no pattern.
    static let genericTicket = try! NSRegularExpression(pattern: "\\b[A-Z][A-Z0-9]{1,9}-[0-9]+\\b")

    /// Whether the request carries a ticket: the role's pattern when it has one, any ticket-like
    /// reference otherwise; in the ticket field, or in the reason when there is none.
    public static func hasTicket(reason: String, ticket: String?, rule: ReasonRule) -> Bool {
        let text = ticket ?? reason
        if rule.ticketPattern != nil { return rule.matchesTicket(in: text) }
        return !tickets(in: text).isEmpty
    }

    public static func evaluate(_ attempt: SpamAttempt, history: SpamHistory, policy: AntiSpamPolicy, now: Date) -> SpamVerdict {
        let windows = policy.windows
        var fired: [FiredSignal] = []
        func add(_ signal: SpamSignal, count: Int = 1, multiple: Int = 1, _ detail: String) {
            let weight = policy.weights[signal] ?? 0
            guard weight != 0, multiple > 0 else { return }
            fired.append(FiredSignal(signal: signal, count: count, points: weight * min(multiple, AntiSpamPolicy.maximumMultiple), detail: detail))
        }
        func within(_ date: Date, _ window: TimeSpan) -> Bool {
            now.timeIntervalSince(date) < TimeInterval(window.seconds)
        }
        let record = history.own.filter { $0.createdAt <= now }
        // What counts against the principal: their requests and refused attempts since an admin lifted their
        // block, if one did (a request decided since then, filed before, is not counted either).
        let cleared = history.unblockedAt ?? .distantPast
        let own = record.filter { $0.createdAt > cleared }
        let refusals = history.refusals.filter { $0.at > cleared }
        // A request the policy grants at once troubles no approver: it weighs half in burst and enumeration.
        func weight(_ request: PastRequest) -> Double { request.reachedApprovers ? 1 : 0.5 }
        let attemptWeight: Double = attempt.refused ? 0 : (attempt.reachesApprovers ? 1 : 0.5)
        let lowInformation = ReasonText.isLowInformation(attempt.reason)
        // One piece of work: a ticket and words that say something. Its requests for different
        // resources are not repetition (an incident touches many systems under one ticket).
        let oneWork = attempt.hasTicket && !lowInformation
        // A track record: not new, and a person approved something of theirs within the history window.
        let trusted = history.earlierRequests >= windows.newPrincipalRequests
            && record.contains { $0.approvedByPerson && within($0.createdAt, windows.history) }

        // One incident's reads: requests granted at once (they trouble no approver) for the same piece of work as
        // this attempt, an informative reason citing the same tickets. On-call work reads a few systems under one
        // ticket at once: while there are at most `incidentReads` of them within the enumeration window they count
        // as one incident, not a burst or a sweep; more, and every one of them counts, whatever ticket they cite.
        let ticketsCited = SpamScore.tickets(in: attempt.reason)
        let citesWork = oneWork && !ticketsCited.isEmpty
        let incident = citesWork ? own.filter {
            within($0.createdAt, windows.enumeration) && !$0.reachedApprovers
                && SpamScore.tickets(in: $0.reason) == ticketsCited && !ReasonText.isLowInformation($0.reason)
        }.map(\.id) : []
        let attemptRead = citesWork && !attempt.reachesApprovers
        let isIncident = incident.count + (attemptRead ? 1 : 0) <= Self.incidentReads
        let excused: Set<String> = isIncident ? Set(incident) : []
        let attemptExcused = attemptRead && isIncident

        // burst: attempts (filed or refused) within the burst window, this one included; an incident's reads do not count.
        let attempts = own.filter { within($0.createdAt, windows.burst) && !excused.contains($0.id) }.reduce(0) { $0 + weight($1) }
            + Double(refusals.filter { within($0.at, windows.burst) }.count) + (attemptExcused ? 0 : attemptWeight)
        if attempts > Double(windows.burstCount) {
            let over = Int((attempts - Double(windows.burstCount)).rounded(.up))
            add(.burst, count: Int(attempts.rounded(.up)), multiple: over, "\(Int(attempts.rounded(.up))) attempts within \(windows.burst)")
        }

        // repeated_reason: the same reason as recent ones, for the same resource, or for any resource
        // when the request is not one ticketed piece of work.
        let same = SameReason(attempt.reason, threshold: windows.similarity)
        // Within one piece of work, a read granted at once and then the write it showed was needed, in the same
        // words, is the next step, not the same request again.
        func repeats(_ request: PastRequest) -> Bool {
            !oneWork || (request.resource == attempt.resource && (request.reachedApprovers || attempt.role == nil || request.role == attempt.role))
        }
        let repeated = own.filter { within($0.createdAt, windows.repeatedReason) && repeats($0) && same.matches($0.reason) }.count
        if repeated > 0 {
            add(.repeatedReason, count: repeated, multiple: repeated,
                oneWork ? "the same reason as \(repeated) of the principal's requests for \(attempt.resource) within \(windows.repeatedReason)"
                    : "the same reason as \(repeated) of the principal's requests within \(windows.repeatedReason)")
        }
        // shared_reason: the same reason from other principals. People with a track record working on
        // one ticket together are a team on an incident, not a campaign; a new account repeating
        // another's words is one from the first.
        let sharers = Set(history.others.filter { $0.requester != attempt.principal && within($0.createdAt, windows.sharedReason)
            && same.matches($0.reason) }.map(\.requester))
        let newcomer = history.earlierRequests < windows.newPrincipalRequests
        let sharersNeeded = newcomer ? 1 : windows.sharedReasonPrincipals
        if sharers.count >= sharersNeeded, !(oneWork && trusted) {
            add(.sharedReason, count: sharers.count, multiple: sharers.count - sharersNeeded + 1,
                "the same reason from \(sharers.count) other principal(s) within \(windows.sharedReason)" + (newcomer ? ", from a new principal" : ""))
        }

        // waiting: approvers already have several of the principal's requests to decide. A slow drip
        // under every rate limit piles up here; a person mid-incident has one or two waiting.
        // (What waits now, filed before an unblock or after.) An attempt refused adds nothing to what
        // approvers have before them: the limit that refused it (the pending cap among them) already
        // answered, and counting the waiting requests again would turn one clear refusal into a block.
        let waiting = record.filter { $0.state == .pending && $0.reachedApprovers }.count
        if attempt.reachesApprovers, !attempt.refused, waiting >= windows.waitingRequests {
            add(.waiting, count: waiting, multiple: waiting - windows.waitingRequests + 1,
                "\(waiting) of the principal's requests already wait for approvers")
        }
        if lowInformation {
            add(.lowInformationReason, "the reason has fewer than three informative words")
        }

        // enumeration: many distinct resources in a short time (one reached only by requests granted at once counts half).
        // The resources an incident's reads reached count as one.
        var reach: [String: Double] = [:]
        let work = "\u{0}incident"
        for request in own where within(request.createdAt, windows.enumeration) {
            let key = excused.contains(request.id) ? work : request.resource
            reach[key] = max(reach[key] ?? 0, weight(request))
        }
        for refusal in refusals where within(refusal.at, windows.enumeration) { reach[refusal.resource] = 1 }
        let attemptKey = attemptExcused ? work : attempt.resource
        reach[attemptKey] = max(reach[attemptKey] ?? 0, attempt.reachesApprovers ? 1 : 0.5)
        let breadth = reach.values.reduce(0, +)
        if breadth >= Double(windows.enumerationResources) {
            let over = Int((breadth - Double(windows.enumerationResources)).rounded(.down)) + 1
            add(.enumeration, count: reach.count, multiple: over,
                "requests for \(reach.count) different resources within \(windows.enumeration)")
        }

        let denials = own.filter { $0.state == .denied && within($0.decidedAt ?? $0.createdAt, windows.recentDenial) }.count
        if denials > 0 {
            add(.recentDenial, count: denials, multiple: denials, "\(denials) denied request(s) within \(windows.recentDenial)")
        }
        let cooldownRefusals = refusals.filter { $0.kind == .cooldown && within($0.at, windows.refusals) }.count
        if cooldownRefusals > 0 {
            add(.cooldownViolation, count: cooldownRefusals, multiple: cooldownRefusals,
                "\(cooldownRefusals) request(s) inside a denial cooldown within \(windows.refusals)")
        }
        let limitRefusals = refusals.filter { $0.kind == .limit && within($0.at, windows.refusals) }.count
        if limitRefusals > 0 {
            add(.overLimit, count: limitRefusals, multiple: limitRefusals, "\(limitRefusals) attempt(s) refused by a rate limit within \(windows.refusals)")
        }

        if history.earlierRequests < windows.newPrincipalRequests {
            add(.newPrincipal, "\(history.earlierRequests) earlier request(s): no track record yet")
        }
        let past = record.filter { within($0.createdAt, windows.history) }
        if past.count >= windows.offHoursMinimumHistory {
            let hour = Self.hourOfDay(now)
            let usual = past.contains { request in
                let apart = abs(Self.hourOfDay(request.createdAt) - hour)
                return min(apart, 24 - apart) <= 1
            }
            if !usual { add(.offHours, "no request from this principal around \(hour):00 UTC in \(past.count) requests") }
        }
        // A ticket vouches for a request that says why; "INC-1 need access" earns no credit.
        if attempt.hasTicket, !lowInformation {
            add(.ticket, "a valid ticket is given")
        }
        if past.contains(where: { $0.resource == attempt.resource && $0.approvedByPerson }) {
            add(.previouslyApproved, "an earlier request for \(attempt.resource) was approved within \(windows.history)")
        }
        let score = fired.reduce(0) { $0 + $1.points }
        return SpamVerdict(score: score, signals: fired, action: policy.thresholds.action(for: score))
    }

    public static func tickets(in text: String) -> Set<String> {
        asciiTickets(text) ?? regexTickets(text)
    }

    static func regexTickets(_ text: String) -> Set<String> {
        Set(genericTicket.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { Range($0.range, in: text).map { String(text[$0]) } })
    }

    /// `genericTicket`'s matches in an ASCII text, scanned byte by byte (nil for any other text): at a word
    /// boundary a capital, 1 to 9 capitals or digits, `-`, digits, and a word boundary. The regular
    /// expression runs once per reason the score compares, hundreds per request; this is the same rule
    /// without it. In ASCII a word character is a letter, a digit or `_`; no backtracking can find another
    /// match, since `-` ends the first run and only a non-word character may follow the digits.
    static func asciiTickets(_ text: String) -> Set<String>? {
        var text = text
        return text.withUTF8 { bytes -> Set<String>? in
            guard bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
            func isCapital(_ byte: UInt8) -> Bool { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) }
            func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
            func isWord(_ byte: UInt8) -> Bool {
                isCapital(byte) || isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || byte == UInt8(ascii: "_")
            }
            var found = Set<String>()
            var start = 0
            while start < bytes.count {
                guard isCapital(bytes[start]), start == 0 || !isWord(bytes[start - 1]) else {
                    start += 1
                    continue
                }
                var dash = start + 1
                while dash < bytes.count, isCapital(bytes[dash]) || isDigit(bytes[dash]) { dash += 1 }
                var end = dash + 1
                while end < bytes.count, isDigit(bytes[end]) { end += 1 }
                guard (2...10).contains(dash - start), dash < bytes.count, bytes[dash] == UInt8(ascii: "-"), end > dash + 1,
                      end == bytes.count || !isWord(bytes[end]) else {
                    start += 1
                    continue
                }
                found.insert(String(decoding: bytes[start..<end], as: UTF8.self))
                start = end
            }
            return found
        }
    }

    static func hourOfDay(_ date: Date) -> Int {
        let seconds = date.unixMilliseconds / 1000
        return Int(((seconds % 86_400) + 86_400) % 86_400 / 3600)
    }

    /// The denial cooldown in force for a principal on a resource: the trailing run of denials
    /// among their decided requests there (approved ends a run; canceled and expired are skipped).
    public static func denialCooldown(_ own: [PastRequest], resource: String, rule: DenialCooldownRule)
        -> (until: Date, denials: Int, length: TimeSpan)? {
        // Only a person's approval ends a run: a role that needs no approval (granted by `policy`) does not.
        let decided = own.filter { $0.resource == resource && $0.decidedAt != nil
            && ($0.state == .denied || ($0.state == .approved && $0.decidedBy != "policy")) }
            // Decisions in the same millisecond have no order between them: the denial is taken as the later
            // (the run goes on), whatever order the history came in.
            .sorted { ($0.decidedAt!, $0.state == .denied ? 1 : 0, $0.createdAt, $0.id) > ($1.decidedAt!, $1.state == .denied ? 1 : 0, $1.createdAt, $1.id) }
        let run = decided.prefix { $0.state == .denied }
        guard let last = run.first?.decidedAt, let length = rule.length(afterDenials: run.count) else { return nil }
        return (last.addingTimeInterval(TimeInterval(length.seconds)), run.count, length)
    }
}
