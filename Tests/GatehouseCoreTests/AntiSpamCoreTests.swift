import Foundation
import Testing
@testable import GatehouseCore

@Suite("GCRA rate limits")
struct GCRATests {
    let limit = RateLimit(count: 20, period: TimeSpan(seconds: 3600), burst: 5)
    let t0 = Fixture.t0.unixMilliseconds

    @Test("a burst is allowed at once, the next one waits one interval, refusals change nothing")
    func burstThenInterval() {
        var tat: Int64? = nil
        for index in 0..<5 {
            let outcome = GCRA.attempt(tat: tat, now: t0, limit: limit)
            #expect(outcome.allowed, "request \(index + 1) of the burst")
            #expect(outcome.remaining == 4 - index)
            tat = outcome.tat
        }
        let refused = GCRA.attempt(tat: tat, now: t0, limit: limit)
        #expect(!refused.allowed)
        #expect(refused.tat == tat)
        #expect(refused.retryAfterMilliseconds == 180_000) // 3600 s / 20
        #expect(!GCRA.attempt(tat: tat, now: t0 + 179_999, limit: limit).allowed)
        let later = GCRA.attempt(tat: tat, now: t0 + 180_000, limit: limit)
        #expect(later.allowed)
        #expect(later.remaining == 0)
    }

    @Test("an idle key recovers its whole burst, never more")
    func recovery() {
        var tat: Int64? = nil
        for _ in 0..<5 { tat = GCRA.attempt(tat: tat, now: t0, limit: limit).tat }
        let muchLater = t0 + 10 * 3_600_000
        var allowed = 0
        for _ in 0..<20 where GCRA.attempt(tat: tat, now: muchLater, limit: limit).allowed {
            tat = GCRA.attempt(tat: tat, now: muchLater, limit: limit).tat
            allowed += 1
        }
        #expect(allowed == 5)
    }

    @Test("rates parse as count per unit or per duration; nonsense does not")
    func parseRates() {
        #expect(RateLimit.parseRate("20/h")?.count == 20)
        #expect(RateLimit.parseRate("20/h")?.period.seconds == 3600)
        #expect(RateLimit.parseRate("1/10m")?.period.seconds == 600)
        #expect(RateLimit.parseRate("100/d")?.period.seconds == 86_400)
        for bad in ["", "20", "/h", "0/h", "-1/h", "20/x", "20/h/2", "abc/h"] {
            #expect(RateLimit.parseRate(bad) == nil, "\(bad)")
        }
    }

    @Test("the RateLimit fields use the structured-field form")
    func fields() {
        let refusal = LimitRefusal(policy: "per-principal", message: "", retryAfterSeconds: 120, quota: 20, windowSeconds: 3600)
        #expect(refusal.policyField == "\"per-principal\";q=20;w=3600")
        #expect(refusal.rateLimitField == "\"per-principal\";r=0;t=120")
        #expect(LimitRefusal.seconds(1) == 1)
        #expect(LimitRefusal.seconds(1000) == 1)
        #expect(LimitRefusal.seconds(1001) == 2)
    }
}

@Suite("Reason text")
struct ReasonTextTests {
    @Test("low-information reasons are recognised; real ones are not", arguments: [
        ("need access", true), ("asdf", true), ("test", true), ("please give me access to prod db asap", true),
        ("aaaa bbbb", true), ("", true),
        ("INC-4411 fix stuck migration", false), ("restart the stuck worker", false), ("look at slow queries", false),
        ("CHG-77 reindex orders", false),
    ])
    func lowInformation(reason: String, low: Bool) {
        #expect(ReasonText.isLowInformation(reason) == low)
    }

    @Test("near-identical reasons are similar; different ones are not")
    func similarity() {
        let base = ReasonText.trigrams("Need to check customer records for the quarterly report")
        #expect(ReasonText.similarity(base, ReasonText.trigrams("need to check customer records for the quarterly report!")) >= 0.99)
        #expect(ReasonText.similarity(base, ReasonText.trigrams("Need to check customer record for the quarterly reports")) >= 0.8)
        #expect(ReasonText.similarity(base, ReasonText.trigrams("INC-7781 rebuild the orders index after failed migration")) < 0.3)
    }
}

@Suite("Spam score")
struct SpamScoreTests {
    let now = Fixture.t0
    let policy = AntiSpamPolicy()

    func past(_ minutesAgo: Double, resource: String = "prod-db", reason: String = "INC-1 rotate the replica credentials",
              state: RequestState = .pending, requester: String = "alice", decidedMinutesAgo: Double? = nil) -> PastRequest {
        PastRequest(id: Identifier.make("req"), requester: requester, resource: resource, role: "write", reason: reason, state: state,
                    createdAt: now.addingTimeInterval(-minutesAgo * 60), decidedAt: decidedMinutesAgo.map { now.addingTimeInterval(-$0 * 60) })
    }

    func score(_ history: SpamHistory, reason: String = "INC-9 vacuum the audit partitions", resource: String = "prod-db",
               ticket: Bool = false, refused: Bool = false) -> SpamVerdict {
        var history = history
        if history.earlierRequests == 0 { history.earlierRequests = 100 }
        return SpamScore.evaluate(SpamAttempt(principal: "alice", resource: resource, reason: reason, hasTicket: ticket, refused: refused),
                                  history: history, policy: policy, now: now)
    }

    func points(_ verdict: SpamVerdict, _ signal: SpamSignal) -> Int? {
        verdict.signals.first { $0.signal == signal }?.points
    }

    @Test("an established principal with a fresh, informative reason scores zero")
    func clean() {
        let verdict = score(SpamHistory())
        #expect(verdict.score == 0)
        #expect(verdict.signals.isEmpty)
        #expect(verdict.action == .allow)
    }

    @Test("burst: the fourth attempt within a minute fires, and each further one adds again, up to four times")
    func burst() {
        #expect(points(score(SpamHistory(own: [past(0.2), past(0.3)])), .burst) == nil)
        #expect(points(score(SpamHistory(own: [past(0.2), past(0.3), past(0.4)])), .burst) == 2)
        #expect(points(score(SpamHistory(own: (0..<20).map { _ in past(0.1) })), .burst) == 8)
        // Refused attempts count as attempts.
        let refusals = (0..<3).map { _ in RecordedRefusal(kind: .limit, resource: "prod-db", at: now) }
        #expect(points(score(SpamHistory(refusals: refusals)), .burst) == 2)
        // Older than the window: nothing.
        #expect(points(score(SpamHistory(own: (0..<10).map { _ in past(5) })), .burst) == nil)
    }

    @Test("repeated_reason: the same reason as the principal's recent requests")
    func repeatedReason() {
        let verdict = score(SpamHistory(own: [past(30, reason: "INC-9 vacuum the audit partitions")]))
        #expect(points(verdict, .repeatedReason) == 3)
        #expect(points(score(SpamHistory(own: [past(30, reason: "CHG-12 resize the connection pool")])), .repeatedReason) == nil)
        #expect(points(score(SpamHistory(own: [past(25 * 60, reason: "INC-9 vacuum the audit partitions")])), .repeatedReason) == nil)
    }

    @Test("shared_reason: the same reason from several other principals, growing with their number")
    func sharedReason() {
        let reason = "INC-9 vacuum the audit partitions"
        let others = (1...6).map { past(Double($0), reason: reason, requester: "u\($0)") }
        #expect(points(score(SpamHistory(others: Array(others.prefix(1))), reason: reason), .sharedReason) == nil)
        #expect(points(score(SpamHistory(others: Array(others.prefix(2))), reason: reason), .sharedReason) == 3)
        #expect(points(score(SpamHistory(others: others), reason: reason), .sharedReason) == 12)
        // One principal filing many times is one sharer.
        let one = (1...6).map { past(Double($0), reason: reason, requester: "u1") }
        #expect(points(score(SpamHistory(others: one), reason: reason), .sharedReason) == nil)
    }

    @Test("low_information_reason, new_principal and ticket")
    func simpleSignals() {
        #expect(points(score(SpamHistory(), reason: "need access"), .lowInformationReason) == 2)
        var fresh = SpamHistory()
        fresh.earlierRequests = 2
        #expect(points(SpamScore.evaluate(SpamAttempt(principal: "alice", resource: "prod-db", reason: "INC-9 vacuum the audit partitions", hasTicket: false),
                                          history: fresh, policy: policy, now: now), .newPrincipal) == 2)
        let never = SpamScore.evaluate(SpamAttempt(principal: "alice", resource: "prod-db", reason: "INC-9 vacuum the audit partitions", hasTicket: false),
                                       history: SpamHistory(), policy: policy, now: now)
        #expect(points(never, .newPrincipal) == 2)
        #expect(points(score(SpamHistory(), ticket: true), .ticket) == -2)
    }

    @Test("enumeration: many distinct resources within the hour")
    func enumeration() {
        let own = ["a", "b", "c"].map { past(10, resource: $0, reason: "CHG-\($0) look around") }
        #expect(points(score(SpamHistory(own: Array(own.prefix(2)))), .enumeration) == nil)
        #expect(points(score(SpamHistory(own: own)), .enumeration) == 3)
    }

    @Test("recent_denial, cooldown_violation and over_limit count what happened recently")
    func pastBehaviour() {
        let denied = [past(50, state: .denied, decidedMinutesAgo: 40), past(90, state: .denied, decidedMinutesAgo: 80)]
        #expect(points(score(SpamHistory(own: denied)), .recentDenial) == 4)
        let cooldown = [RecordedRefusal(kind: .cooldown, resource: "prod-db", at: now.addingTimeInterval(-600))]
        #expect(points(score(SpamHistory(refusals: cooldown)), .cooldownViolation) == 4)
        let limited = (0..<9).map { _ in RecordedRefusal(kind: .limit, resource: "prod-db", at: now.addingTimeInterval(-900)) }
        #expect(points(score(SpamHistory(refusals: limited)), .overLimit) == 8)
    }

    @Test("off_hours needs a history, and fires only far from the principal's usual hours")
    func offHours() {
        // Ten requests on earlier days, all at the same hour of day as now.
        let usual = (1...10).map { past(Double($0) * 1440) }
        #expect(points(score(SpamHistory(own: usual)), .offHours) == nil)
        let elsewhere = (1...10).map { past(Double($0) * 1440 + 6 * 60) }
        #expect(points(score(SpamHistory(own: elsewhere)), .offHours) == 1)
        #expect(points(score(SpamHistory(own: Array(elsewhere.prefix(9)))), .offHours) == nil)
    }

    @Test("previously_approved lowers the score for the same resource only")
    func previouslyApproved() {
        let approved = [past(3 * 1440, state: .approved, decidedMinutesAgo: 3 * 1440)]
        #expect(points(score(SpamHistory(own: approved)), .previouslyApproved) == -2)
        #expect(points(score(SpamHistory(own: approved), resource: "billing-api"), .previouslyApproved) == nil)
    }

    @Test("thresholds pick the action; a weight of 0 turns a signal off")
    func thresholds() {
        let t = AntiSpamPolicy.Thresholds()
        #expect([0, 3, 4, 7, 8, 11, 12, 14, 15, 40].map { t.action(for: $0) }
                == [.allow, .allow, .throttle, .throttle, .extraApproval, .extraApproval, .quarantine, .quarantine, .block, .block])
        var quiet = AntiSpamPolicy()
        quiet.weights[.lowInformationReason] = 0
        let verdict = SpamScore.evaluate(SpamAttempt(principal: "alice", resource: "prod-db", reason: "asdf", hasTicket: false),
                                         history: SpamHistory(earlierRequests: 100), policy: quiet, now: now)
        #expect(verdict.signals.isEmpty)
    }

    @Test("denial cooldown: 10m, 20m, 40m for consecutive denials; approval resets; cancel does not")
    func denialCooldown() {
        let rule = DenialCooldownRule()
        #expect(rule.length(afterDenials: 0) == nil)
        #expect([1, 2, 3, 4].map { rule.length(afterDenials: $0)!.seconds } == [600, 1200, 2400, 4800])
        #expect(rule.length(afterDenials: 60)!.seconds == 86_400)
        let run = [past(10, state: .denied, decidedMinutesAgo: 5), past(100, state: .canceled, decidedMinutesAgo: 90),
                   past(200, state: .denied, decidedMinutesAgo: 150)]
        let cooldown = SpamScore.denialCooldown(run, resource: "prod-db", rule: rule)
        #expect(cooldown?.denials == 2)
        #expect(cooldown?.length.seconds == 1200)
        #expect(cooldown?.until == now.addingTimeInterval(-300 + 1200))
        let reset = [past(10, state: .denied, decidedMinutesAgo: 5), past(100, state: .approved, decidedMinutesAgo: 90),
                     past(200, state: .denied, decidedMinutesAgo: 150)]
        #expect(SpamScore.denialCooldown(reset, resource: "prod-db", rule: rule)?.denials == 1)
        #expect(SpamScore.denialCooldown(run, resource: "billing-api", rule: rule) == nil)
    }

    @Test("tickets: the role's pattern when it has one, any ticket-like reference otherwise")
    func tickets() {
        let strict = ReasonRule(minLength: 1, ticketPattern: "(INC|CHG)-[0-9]+")
        #expect(SpamScore.hasTicket(reason: "INC-1 fix", ticket: nil, rule: strict))
        #expect(!SpamScore.hasTicket(reason: "OPS-1 fix", ticket: nil, rule: strict))
        #expect(SpamScore.hasTicket(reason: "OPS-1 fix", ticket: nil, rule: ReasonRule()))
        #expect(!SpamScore.hasTicket(reason: "fix the thing", ticket: nil, rule: ReasonRule()))
        #expect(SpamScore.hasTicket(reason: "fix the thing", ticket: "JIRA-42", rule: ReasonRule()))
    }
}

@Suite("Anti-spam policy section")
struct AntiSpamPolicyLoaderTests {
    let base = """
        version: 1
        principals: {alice: {groups: [engineers]}, erin: {groups: [security]}}
        resources:
          prod-db: {kind: postgres, roles: {read: {requesters: [engineers], approvals: 0, max_duration: 1h, allows: read}}}

        """

    @Test("defaults apply without the section; every key is read")
    func reads() throws {
        let defaults = try #require(PolicyLoader.load(yaml: base).policy)
        #expect(defaults.antiSpam == AntiSpamPolicy())
        #expect(defaults.reviewerGroups == ["security"])
        let yaml = base + """
            antispam:
              enabled: true
              limits:
                per_principal: {rate: 10/h, burst: 3}
                per_resource: off
                per_source_ip: {rate: 1/10m}
                max_pending_per_principal: 2
              denial_cooldown: {base: 5m, factor: 3, max: 2h}
              approver_notifications: {rate: 4/h, burst: 2}
              throttle_cooldown: 30m
              blocked_delay: 3s
              reviewers: [security]
              score:
                thresholds: {throttle: 5, extra_approval: 9, quarantine: 13, block: 20}
                weights: {burst: 1, off_hours: 0, ticket: -5}
            """
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.problems.isEmpty, "\(result.problems)")
        let spam = try #require(result.policy?.antiSpam)
        #expect(spam.perPrincipal == RateLimit(count: 10, period: TimeSpan(seconds: 3600), burst: 3))
        #expect(spam.perResource == nil)
        #expect(spam.perSourceIP == RateLimit(count: 1, period: TimeSpan(seconds: 600), burst: 20))
        #expect(spam.maxPendingPerPrincipal == 2)
        #expect(spam.denialCooldown.base.seconds == 300 && spam.denialCooldown.factor == 3 && spam.denialCooldown.max.seconds == 7200)
        #expect(spam.approverNotifications?.burst == 2)
        #expect(spam.throttleCooldown.seconds == 1800)
        #expect(spam.blockedDelay?.seconds == 3)
        #expect(PolicyLoader.load(yaml: base + "antispam: {blocked_delay: off}\n").policy?.antiSpam.blockedDelay == nil)
        #expect(spam.thresholds.block == 20)
        #expect(spam.weights[.burst] == 1 && spam.weights[.offHours] == 0 && spam.weights[.ticket] == -5)
        #expect(spam.weights[.sharedReason] == 3)
    }

    @Test("mistakes are reported with their line and a way out", arguments: [
        ("antispam: {limits: {per_principal: {rate: lots}}}", "rate must be a count per unit"),
        ("antispam: {limits: {per_principal: {rate: 20/h, burst: 0}}}", "burst is 0"),
        ("antispam: {score: {weights: {bursty: 2}}}", "did you mean `burst`"),
        ("antispam: {score: {thresholds: {throttle: 10, extra_approval: 5}}}", "must grow"),
        ("antispam: {reviewers: [secruity]}", "did you mean `security`"),
        ("antispam: {denial_cooldown: {base: 2h, max: 1h}}", "shorter than its base"),
        ("antispam: {enabled: maybe}", "true or false"),
        ("antispam: {blocked_delay: 5m}", "at most 1m"),
        ("antispam: {blocked_delay: soon}", "antispam.blocked_delay"),
        ("antispam: {limitz: {}}", "did you mean `limits`"),
    ])
    func mistakes(section: String, expected: String) {
        let result = PolicyLoader.load(yaml: base + section + "\n")
        #expect(result.policy == nil)
        #expect(result.errors.contains { $0.message.contains(expected) && $0.line == 5 }, "\(result.errors)")
    }
}
