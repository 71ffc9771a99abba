import Foundation
import Testing
@testable import GatehouseCore

@Suite("Clock and risk")
struct ClockAndRiskTests {
    @Test("the manual clock moves only when told")
    func manualClock() {
        let clock = ManualClock(Fixture.t0)
        #expect(clock.now() == Fixture.t0)
        #expect(clock.now() == Fixture.t0)
        clock.advance(by: 90)
        #expect(clock.now() == Fixture.t0.addingTimeInterval(90))
        clock.set(Date(timeIntervalSince1970: 0))
        #expect(clock.now() == Date(timeIntervalSince1970: 0))
    }

    @Test("RFC 3339 text is UTC and shows the stored millisecond", arguments: [
        (Int64(1_800_000_000_000), "2027-01-15T08:00:00.000Z"),
        (1_800_000_000_123, "2027-01-15T08:00:00.123Z"),   // .123 is stored as .12299…; it must not show as .122
        (1_800_000_000_500, "2027-01-15T08:00:00.500Z"),
        (1_776_120_900_139, "2026-04-13T22:55:00.139Z"),
        (1_763_213_677_847, "2025-11-15T13:34:37.847Z"),
        (1_800_000_000_999, "2027-01-15T08:00:00.999Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-1_000, "1969-12-31T23:59:59.000Z"),
        (-1_001, "1969-12-31T23:59:58.999Z"),
    ])
    func rfc3339(ms: Int64, text: String) {
        #expect(Date(unixMilliseconds: ms).rfc3339 == text)
    }

    @Test("risk levels are ordered read < write < dangerous < forbidden")
    func riskOrder() {
        #expect(RiskLevel.allCases.sorted() == [.read, .write, .dangerous, .forbidden])
        #expect(RiskLevel.read < .write)
        #expect(RiskLevel.dangerous < .forbidden)
        #expect(!(RiskLevel.forbidden < .dangerous))
    }
}
