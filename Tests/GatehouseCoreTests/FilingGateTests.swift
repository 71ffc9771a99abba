import Foundation
import Testing
@testable import GatehouseCore

/// The rules the application layer used to compute itself, now pure: the filing gate's order and
/// texts, the notification plan, who may do what with a request, and the comments a denial and a
/// report must carry.
@Suite("Filing gate")
struct FilingGateTests {
    let t0 = Fixture.t0
    let spam = AntiSpamPolicy()

    func situation(history: SpamHistory = SpamHistory(), throttledUntil: Date? = nil, open: [AccessRequest] = [],
                   tats: [String: Int64] = [:]) -> FilingGate.Situation {
        FilingGate.Situation(history: history, throttledUntil: throttledUntil, open: open, tats: tats)
    }

    func buckets(ip: String? = "10.0.0.1") -> [FilingGate.RateBucket] {
        FilingGate.rateBuckets(requester: "alice", resource: "prod-db", sourceIP: ip, policy: spam)
    }

    func denied(_ n: Int) -> SpamHistory {
        SpamHistory(own: (0..<n).map { i in
            PastRequest(id: "req_\(i)", requester: "alice", resource: "prod-db", role: "write", reason: "INC-1 try \(i)", state: .denied,
                        createdAt: t0.addingTimeInterval(Double(-600 + i)), decidedAt: t0.addingTimeInterval(Double(-60 + i)), decidedBy: "bob")
        })
    }

    @Test("bucket keys: per principal, per principal and resource, per source address, in that order")
    func bucketKeys() {
        #expect(buckets().map(\.key) == ["p:alice", "r:alice/prod-db", "ip:10.0.0.1"])
        #expect(buckets().map(\.policy) == ["per-principal", "per-resource", "per-source-ip"])
        #expect(buckets(ip: nil).map(\.key) == ["p:alice", "r:alice/prod-db"])
    }

    @Test("a fresh principal passes and consumes one unit of every bucket")
    func freshPasses() {
        let verdict = FilingGate.judge(resource: "prod-db", buckets: buckets(), situation: situation(), policy: spam, now: t0)
        guard case .pass(let consume) = verdict else { Issue.record("expected pass, got \(verdict)"); return }
        #expect(consume.map(\.key) == ["p:alice", "r:alice/prod-db", "ip:10.0.0.1"])
        let interval = spam.perPrincipal!.intervalMilliseconds
        #expect(consume[0].tat == t0.unixMilliseconds + interval)
    }

    @Test("the denial cooldown comes before the throttle, the pending cap and the rates")
    func cooldownFirst() {
        let full = Dictionary(uniqueKeysWithValues: buckets().map { ($0.key, t0.unixMilliseconds + 10_000_000) })
        let open = (0..<5).map { _ in try! Fixture.pending() }
        let verdict = FilingGate.judge(resource: "prod-db", buckets: buckets(),
                                       situation: situation(history: denied(2), throttledUntil: t0.addingTimeInterval(60), open: open, tats: full),
                                       policy: spam, now: t0)
        guard case .refused(let refusal, let kind) = verdict else { Issue.record("expected refusal, got \(verdict)"); return }
        #expect(refusal.policy == "denial-cooldown")
        #expect(kind == .cooldown)
        #expect(refusal.message.contains("were denied in a row"))
    }

    @Test("then the throttle, then the pending cap, then the first full bucket")
    func order() {
        let full = Dictionary(uniqueKeysWithValues: buckets().map { ($0.key, t0.unixMilliseconds + 10_000_000) })
        let open = (0..<5).map { _ in try! Fixture.pending() }
        func refusedBy(_ s: FilingGate.Situation) -> String? {
            if case .refused(let refusal, _) = FilingGate.judge(resource: "prod-db", buckets: buckets(), situation: s, policy: spam, now: t0) {
                return refusal.policy
            }
            return nil
        }
        #expect(refusedBy(situation(throttledUntil: t0.addingTimeInterval(60), open: open, tats: full)) == "throttle")
        #expect(refusedBy(situation(throttledUntil: t0.addingTimeInterval(-1), open: open, tats: full)) == "pending")
        #expect(refusedBy(situation(open: Array(open.prefix(4)), tats: full)) == "per-principal")
        var onlyResource = full
        onlyResource["p:alice"] = nil
        #expect(refusedBy(situation(tats: onlyResource)) == "per-resource")
        #expect(refusedBy(situation(tats: ["ip:10.0.0.1": t0.unixMilliseconds + 10_000_000])) == "per-source-ip")
    }

    @Test("a refusal by a rate names the limit and when to try again, and consumes nothing")
    func rateRefusalText() {
        let verdict = FilingGate.judge(resource: "prod-db", buckets: buckets(),
                                       situation: situation(tats: ["r:alice/prod-db": t0.unixMilliseconds + 10_000_000]), policy: spam, now: t0)
        guard case .refused(let refusal, let kind) = verdict else { Issue.record("expected refusal, got \(verdict)"); return }
        #expect(kind == .limit)
        #expect(refusal.message.hasPrefix("too many your requests for prod-db: the limit is 60 per 1h with bursts of 10; try again in"))
        #expect(refusal.quota == 60)
        #expect(refusal.windowSeconds == 3600)
        #expect(refusal.retryAfterSeconds > 0)
    }
}
