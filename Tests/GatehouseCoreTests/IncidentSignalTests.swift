import Foundation
import Testing
@testable import GatehouseCore

/// The score's reading of incident work: one ticket over many systems is one piece of work, requests
/// that trouble no approver weigh less, a track record counts, and a ticket vouches only for a reason.
@Suite("Spam score: incident work")
struct IncidentSignalTests {
    let now = Fixture.t0
    let policy = AntiSpamPolicy()
    let incident = "INC-2291 checkout errors, tracing the failing payment path"

    func past(_ secondsAgo: Double, resource: String, reason: String, state: RequestState = .approved, decidedBy: String? = "policy",
              requester: String = "alice") -> PastRequest {
        PastRequest(id: Identifier.make("req"), requester: requester, resource: resource, role: "read", reason: reason, state: state,
                    createdAt: now.addingTimeInterval(-secondsAgo), decidedAt: now.addingTimeInterval(-secondsAgo), decidedBy: decidedBy)
    }

    func verdict(_ history: SpamHistory, resource: String = "db6", reason: String? = nil, ticket: Bool = true,
                 reachesApprovers: Bool = false, principal: String = "alice") -> SpamVerdict {
        var history = history
        if history.earlierRequests == 0 { history.earlierRequests = 50 }
        return SpamScore.evaluate(SpamAttempt(principal: principal, resource: resource, reason: reason ?? incident, hasTicket: ticket,
                                              reachesApprovers: reachesApprovers), history: history, policy: policy, now: now)
    }

    func points(_ verdict: SpamVerdict, _ signal: SpamSignal) -> Int? {
        verdict.signals.first { $0.signal == signal }?.points
    }

    var fiveReads: [PastRequest] { (1...5).map { past(Double($0) * 9, resource: "db\($0)", reason: incident) } }

    @Test("the sixth read of an incident, one ticket, granted at once: nothing fires but the ticket")
    func sixthRead() {
        let result = verdict(SpamHistory(own: fiveReads))
        #expect(points(result, .burst) == nil)
        #expect(points(result, .repeatedReason) == nil)
        #expect(points(result, .enumeration) == nil)
        #expect(result.score < 0)
        #expect(result.action == .allow)
    }

    @Test("the same six requests going to approvers count in full: burst and enumeration fire")
    func fullWeightWhenApproversAreAsked() {
        let asked = (1...5).map { past(Double($0) * 9, resource: "db\($0)", reason: incident, state: .pending, decidedBy: nil) }
        let result = verdict(SpamHistory(own: asked), reachesApprovers: true)
        #expect(points(result, .burst) == 6)        // 6 attempts within the minute: 3 over, 2 points each
        #expect(points(result, .enumeration) == 9)  // 6 resources, 3 over
        #expect(points(result, .repeatedReason) == nil)
    }

    @Test("repetition still counts for the same resource, and for any resource when the reason says nothing")
    func repetitionThatCounts() {
        let refiled = [past(60, resource: "db6", reason: incident, state: .canceled, decidedBy: "alice")]
        #expect(points(verdict(SpamHistory(own: refiled)), .repeatedReason) == 3)
        let vague = (1...2).map { past(Double($0) * 20, resource: "db\($0)", reason: "INC-1 need access") }
        let result = verdict(SpamHistory(own: vague), reason: "INC-1 need access")
        #expect(points(result, .repeatedReason) == 6)
        #expect(points(result, .lowInformationReason) == 2)
        #expect(points(result, .ticket) == nil)   // a ticket vouches only for a reason that says why
    }

    @Test("the same ticketed reason from others: a team with a track record is not a campaign; new accounts are")
    func sharedReason() {
        let others = ["bob", "carol"].map { past(120, resource: "db1", reason: incident, requester: $0) }
        let record = [past(86_400, resource: "db2", reason: "CHG-1 resize the pool", decidedBy: "dave")]
        let team = verdict(SpamHistory(own: record, others: others, earlierRequests: 40))
        #expect(points(team, .sharedReason) == nil)
        // Access taken by break-glass, or granted at once by the policy, is no track record.
        let selfServed = [past(86_400, resource: "db2", reason: "INC-9 outage", decidedBy: "break-glass"),
                          past(90_000, resource: "db3", reason: "INC-9 outage", decidedBy: "policy")]
        #expect(points(verdict(SpamHistory(own: selfServed, others: others, earlierRequests: 40)), .sharedReason) == 3)
        // A new account repeating another's words is a campaign from the first other account.
        let newcomer = verdict(SpamHistory(others: others, earlierRequests: 1), principal: "spam1")
        #expect(points(newcomer, .sharedReason) == 6)
        #expect(points(newcomer, .newPrincipal) == 2)
        #expect(points(verdict(SpamHistory(others: Array(others.prefix(1)), earlierRequests: 1), principal: "spam1"), .sharedReason) == 3)
        #expect(points(verdict(SpamHistory(own: record, others: Array(others.prefix(1)), earlierRequests: 40)), .sharedReason) == nil,
                "one other principal is not a campaign for a principal with a history")
    }

    @Test("a pile of requests waiting for approvers: the third already waiting counts, requests granted at once do not")
    func waitingPile() {
        func waiting(_ count: Int, decidedBy: String? = nil) -> [PastRequest] {
            (0..<count).map { i in
                PastRequest(id: "req_w\(i)", requester: "alice", resource: "db\(i)", role: "write", reason: "CHG-\(i) rotate the keys of db\(i)",
                            state: decidedBy == nil ? .pending : .approved, createdAt: now.addingTimeInterval(-Double(600 * (i + 1))),
                            decidedAt: decidedBy == nil ? nil : now, decidedBy: decidedBy)
            }
        }
        func score(_ own: [PastRequest], reachesApprovers: Bool = true) -> Int? {
            points(verdict(SpamHistory(own: own, earlierRequests: 40), reachesApprovers: reachesApprovers), .waiting)
        }
        #expect(score(waiting(2)) == nil)
        #expect(score(waiting(3)) == 3)
        #expect(score(waiting(4)) == 6)
        #expect(score(waiting(5, decidedBy: "policy")) == nil, "granted at once: nothing waits")
        #expect(score(waiting(4), reachesApprovers: false) == nil, "a request nobody is asked about adds nothing to the pile")
    }
}
