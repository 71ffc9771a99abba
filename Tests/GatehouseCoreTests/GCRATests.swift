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
