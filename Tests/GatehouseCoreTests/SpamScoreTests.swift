import Foundation
import Testing
@testable import GatehouseCore

@Suite("Spam score")
struct SpamScoreTests {
    let now = Fixture.t0
    let policy = AntiSpamPolicy()

    func past(_ minutesAgo: Double, resource: String = "prod-db", reason: String = "INC-1 rotate the replica credentials",
              state: RequestState = .pending, requester: String = "alice", decidedMinutesAgo: Double? = nil,
              decidedBy: String? = nil) -> PastRequest {
        PastRequest(id: Identifier.make("req"), requester: requester, resource: resource, role: "write", reason: reason, state: state,
                    createdAt: now.addingTimeInterval(-minutesAgo * 60), decidedAt: decidedMinutesAgo.map { now.addingTimeInterval(-$0 * 60) },
                    decidedBy: decidedBy)
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

    /// Reads granted at once under one ticket, an informative reason: up to six are one incident (no burst, one
    /// resource); a seventh makes every one of them count, whatever ticket they cite.
    @Test("an incident's reads granted at once: six are one incident; more are a sweep and count in burst and enumeration")
    func incidentReads() {
        let reason = "INC-7 checkout errors, tracing the failing payment path"
        func reads(_ count: Int) -> [PastRequest] {
            (0..<count).map {
                PastRequest(id: "req_\($0)", requester: "alice", resource: "db\($0)", role: "read", reason: reason, state: .approved,
                            createdAt: now.addingTimeInterval(-Double(count - $0) * 5), decidedAt: now.addingTimeInterval(-Double(count - $0) * 5),
                            decidedBy: "policy")
            }
        }
        func judged(_ count: Int) -> SpamVerdict {
            SpamScore.evaluate(SpamAttempt(principal: "alice", resource: "db-next", reason: reason, hasTicket: true, reachesApprovers: false, role: "read"),
                               history: SpamHistory(own: reads(count), earlierRequests: 100), policy: policy, now: now)
        }
        // The sixth read of an incident: nothing but the ticket.
        #expect(points(judged(5), .burst) == nil && points(judged(5), .enumeration) == nil, "\(judged(5).signals)")
        #expect(judged(5).score < 0)
        // Eleven reads before this one: a sweep, as it was without a ticket.
        let sweep = judged(11)
        #expect(points(sweep, .burst) != nil && points(sweep, .enumeration) != nil, "\(sweep.signals)")
        #expect(sweep.action != .allow, "\(sweep.signals)")
        // Another ticket's reads are not this incident's.
        let other = SpamScore.evaluate(SpamAttempt(principal: "alice", resource: "db-next", reason: "INC-8 look into the replica lag again",
                                                   hasTicket: true, reachesApprovers: false, role: "read"),
                                       history: SpamHistory(own: reads(7), earlierRequests: 100), policy: policy, now: now)
        #expect(points(other, .burst) != nil, "\(other.signals)")
        #expect(points(judged(6), .burst) != nil, "\(judged(6).signals)")
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

    @Test("after an admin lifts a block, what the principal did before counts no more against them; their track record still counts")
    func unblocked() {
        let cooldown = (0..<4).map { RecordedRefusal(kind: .cooldown, resource: "prod-db", at: now.addingTimeInterval(-Double(60 * (4 + $0)))) }
        let burst = (0..<5).map { past(0.5 + Double($0) * 0.05, reason: "fix it now \($0)") }
        let denied = past(30, state: .denied, decidedMinutesAgo: 20)
        let approved = past(600, resource: "prod-db", state: .approved, decidedMinutesAgo: 590, decidedBy: "bob")
        let history = SpamHistory(own: burst + [denied, approved], refusals: cooldown)
        let before = score(history)
        for signal in [SpamSignal.cooldownViolation, .burst, .recentDenial] {
            #expect(points(before, signal) != nil, "\(signal)")
        }
        // Unblocked ten seconds ago: the refusals, the burst and the denial were all before it.
        var lifted = history
        lifted.unblockedAt = now.addingTimeInterval(-10)
        let after = score(lifted)
        for signal in [SpamSignal.cooldownViolation, .burst, .recentDenial] {
            #expect(points(after, signal) == nil, "\(signal)")
        }
        #expect(points(after, .previouslyApproved) == points(before, .previouslyApproved))
        #expect(points(after, .previouslyApproved) != nil)
        #expect(after.score < before.score)
        // What happens after the unblock counts as before.
        lifted.refusals.append(RecordedRefusal(kind: .cooldown, resource: "prod-db", at: now.addingTimeInterval(-5)))
        #expect(points(score(lifted), .cooldownViolation) == 4)
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

    @Test("previously_approved lowers the score for the same resource only, and only for a person's approval")
    func previouslyApproved() {
        let approved = [past(3 * 1440, state: .approved, decidedMinutesAgo: 3 * 1440, decidedBy: "carol")]
        #expect(points(score(SpamHistory(own: approved)), .previouslyApproved) == -2)
        #expect(points(score(SpamHistory(own: approved), resource: "billing-api"), .previouslyApproved) == nil)
        for selfServed in ["policy", "break-glass", "alice"] {
            let granted = [past(3 * 1440, state: .approved, decidedMinutesAgo: 3 * 1440, decidedBy: selfServed)]
            #expect(points(score(SpamHistory(own: granted)), .previouslyApproved) == nil, "\(selfServed)")
        }
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
        // An approval and a denial in the same millisecond: the denial is the later, in either order given.
        let tie = [past(10, state: .denied, decidedMinutesAgo: 5), past(20, state: .approved, decidedMinutesAgo: 5),
                   past(200, state: .denied, decidedMinutesAgo: 150)]
        #expect(SpamScore.denialCooldown(tie, resource: "prod-db", rule: rule)?.denials == 1)
        #expect(SpamScore.denialCooldown(tie.reversed(), resource: "prod-db", rule: rule)?.denials == 1)
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
