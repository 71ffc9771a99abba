import Foundation
import GatehouseCore

/// In-process spam score throughput on one thread: `SpamScore.evaluate` over a full history (the
/// principal's newest 100 requests and 200 of other principals', each reason with a ticket), as the
/// server computes it inside every filing's transaction.
enum ScoreBench {
    static func history(now: Date) -> SpamHistory {
        let reasons = ["INC-%d fix the stuck payment batch on the orders table", "CHG-%d rotate the replica's certificates before Friday",
                       "INC-%d benchmark cycle", "look into the slow invoice export for finance (OPS-%d)"]
        func past(_ n: Int, requester: String) -> PastRequest {
            PastRequest(id: "req_s\(n)", requester: requester, resource: "db\(n % 5)", role: "write",
                        reason: String(format: reasons[n % reasons.count], 4000 + n), state: n % 7 == 0 ? .denied : .approved,
                        createdAt: now.addingTimeInterval(-Double(n) * 9), decidedAt: now.addingTimeInterval(-Double(n) * 9 + 2), decidedBy: "ops1")
        }
        return SpamHistory(own: (0..<100).map { past($0, requester: "u001") },
                           others: (0..<200).map { past($0 + 100, requester: "u\(100 + $0 % 99)") },
                           refusals: [], earlierRequests: 3)
    }

    static func run(seconds: Double) {
        let now = Date()
        let history = history(now: now)
        let policy = AntiSpamPolicy()
        let attempt = SpamAttempt(principal: "u001", resource: "db3", reason: "INC-5123 benchmark cycle", hasTicket: true)
        var count = 0, score = 0
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            for _ in 0..<20 { score &+= SpamScore.evaluate(attempt, history: history, policy: policy, now: now).score }
            count += 20
        }
        let elapsed = Date().timeIntervalSince(start)
        print(String(format: "spam score, 100 own + 200 others' requests: %.0f evaluations/s (%.1f µs each; score %d)",
                     Double(count) / elapsed, elapsed / Double(count) * 1e6, score / count))
    }
}
