import Foundation
import GatehouseCore
@testable import GatehouseServer
import Testing

/// One client address may not fill the sign-ins under way by itself: 240 starts at once, then 120 a minute;
/// other addresses are not held back by it.
@Suite("Sign-in starts per address")
struct SignInStartsTests {
    @Test("an address gets its burst, then is refused 429 with when to retry; another address is not held back; time gives room again")
    func perAddress() throws {
        let starts = SignInStarts()
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        for _ in 0..<SignInStarts.rate.burst { try starts.admit("203.0.113.7", now: t0) }
        do {
            try starts.admit("203.0.113.7", now: t0)
            Issue.record("the start past the burst was taken")
        } catch let error as GatehouseError {
            #expect(error.kind == .tooManyRequests && error.refusal?.policy == "per-source-ip", "\(error)")
            #expect(error.refusal?.retryAfterSeconds == 1, "one start comes back every half second")
            #expect(error.message.contains("203.0.113.7"))
        }
        try starts.admit("198.51.100.1", now: t0)
        // Half a second later one more start is allowed from the first address, and only one.
        try starts.admit("203.0.113.7", now: t0.addingTimeInterval(0.5))
        #expect(throws: GatehouseError.self) { try starts.admit("203.0.113.7", now: t0.addingTimeInterval(0.5)) }
        // A minute later, 120 more.
        for _ in 0..<SignInStarts.rate.count { try starts.admit("203.0.113.7", now: t0.addingTimeInterval(60.5)) }
        #expect(throws: GatehouseError.self) { try starts.admit("203.0.113.7", now: t0.addingTimeInterval(60.5)) }
    }
}
